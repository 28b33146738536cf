//! The instruction sets the FMA kernels are compiled for, and the widest one this CPU has.
//!
//! `PackedLinear` and `panel_gemm` each have a kernel per instruction set, all giving the same
//! bits; this is the one place that picks which runs.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    /// AVX-512F, else AVX2 with FMA, else the portable loops.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }
}
