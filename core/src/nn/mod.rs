//! Layers shared by the codecs: 1-D convolutions (plain, transposed, depthwise) with fast CPU
//! kernels, the Snake and ELU activations, and a seedable noise source.

mod amx;
mod conv;
mod conv_amx;
mod conv_cpu;
mod conv_direct;
mod conv_ops;
mod conv_polyphase_winograd;
mod conv_strided_direct;
mod conv_tr_direct;
mod conv_winograd;
mod elu;
pub mod exp;
mod gemm;
mod isa;
mod packed_linear;
mod panel_gemm;
mod residual_unit;
mod residual_unit_amx;
mod rng;
mod snake;
mod snake_cpu;
mod snake_residual_unit;
mod snake_residual_unit_fma;
mod tile_parts;

pub use conv::{
    Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, EdgeMode, causal_padding,
    same_padding,
};
pub(crate) use conv_ops::with_data;
pub use conv_ops::{InputActivation, residual_depthwise_separable};
pub use conv_polyphase_winograd::{
    strided_reach_frames as strided_winograd_reach_frames,
    transposed_reach_frames as transposed_winograd_reach_frames,
};
pub use conv_winograd::reach_extension as winograd_reach_extension;
pub use elu::{elu_f32, elu_in_place, elu_into};
pub use gemm::{MatRef, matmul_into};
pub use packed_linear::PackedLinear;
pub use residual_unit::EluResidualUnit;
pub use rng::NormalRng;
pub use snake::Snake1d;
pub use snake_residual_unit::SnakeResidualUnit;

/// Deterministic values in [-1, 1] for the kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}
