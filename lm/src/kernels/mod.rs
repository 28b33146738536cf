//! CPU kernels for the f32 hot paths (fused attention, gated MLP activations, the column-parallel linear layer), used when the model computes
//! in f32 on the CPU; other dtypes and devices take the plain candle ops.

pub mod add;
pub mod attention;
pub use tessera_core::nn::exp;
mod gemm;
pub mod glu;
pub mod linear;
pub mod rope;

#[cfg(test)]
mod tests;
