//! Mimi's split residual VQ (`MimiSplitResidualVectorQuantizer`): a semantic RVQ (its first
//! `num_semantic_quantizers` codebooks) and an acoustic RVQ (the rest), both quantizing the
//! same latents, each inside its own kernel-1 input/output projections. Codes are the
//! semantic ones followed by the acoustic ones; the latents are the sum of both decodings.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use tessera_core::quant::{Projection, Quantizer, ResidualVectorQuantizer, VqLayout};
use tessera_core::{Error, Result};

use super::config::MimiConfig;

#[derive(Debug, Clone)]
pub(crate) struct SplitRvq {
    semantic: ResidualVectorQuantizer,
    acoustic: ResidualVectorQuantizer,
    n_semantic: usize,
}

/// One of the two RVQs under `{vb}`, with its projections when the config has them.
fn load_rvq(vb: &VarBuilder, n_q: usize, cfg: &MimiConfig) -> Result<ResidualVectorQuantizer> {
    // The RVQ reads its EMA statistics without a shape; check them against the config first,
    // so that a mismatch names the weight and the file.
    for i in 0..n_q {
        let cb = vb.pp("layers").pp(i).pp("codebook");
        cb.get((cfg.codebook_size, cfg.codebook_dim), "embed_sum")?;
        cb.get(cfg.codebook_size, "cluster_usage")?;
    }
    let rvq = ResidualVectorQuantizer::load(vb, "layers", n_q, &VqLayout::MIMI_TRANSFORMERS)?;
    let inner = cfg.vector_quantization_hidden_dimension;
    if inner == cfg.hidden_size {
        return Ok(rvq);
    }
    let input = vb
        .pp("input_proj")
        .get((inner, cfg.hidden_size, 1), "weight")?;
    let output = vb
        .pp("output_proj")
        .get((cfg.hidden_size, inner, 1), "weight")?;
    rvq.with_projections(
        Projection::new(input, None)?,
        Projection::new(output, None)?,
    )
}

impl SplitRvq {
    /// `{vb}.semantic_residual_vector_quantizer` and `{vb}.acoustic_residual_vector_quantizer`.
    pub fn load(vb: VarBuilder, cfg: &MimiConfig) -> Result<Self> {
        let n_semantic = cfg.num_semantic_quantizers;
        Ok(SplitRvq {
            semantic: load_rvq(
                &vb.pp("semantic_residual_vector_quantizer"),
                n_semantic,
                cfg,
            )?,
            acoustic: load_rvq(
                &vb.pp("acoustic_residual_vector_quantizer"),
                cfg.num_quantizers - n_semantic,
                cfg,
            )?,
            n_semantic,
        })
    }

    pub fn max_quantizers(&self) -> usize {
        self.n_semantic + self.acoustic.max_quantizers()
    }

    /// Latents `[B, D, T]` -> codes `[B, n_q, T]`, `n_semantic <= n_q <= max`.
    pub fn encode(&self, latents: &Tensor, n_q: usize) -> Result<Tensor> {
        if n_q < self.n_semantic || n_q > self.max_quantizers() {
            return Err(Error::invalid(format!(
                "Mimi takes {}..={} codebooks, n_q = {n_q} is not available",
                self.n_semantic,
                self.max_quantizers()
            )));
        }
        let semantic = self.semantic.encode_n(latents, self.n_semantic)?;
        if n_q == self.n_semantic {
            return Ok(semantic);
        }
        let acoustic = self.acoustic.encode_n(latents, n_q - self.n_semantic)?;
        Ok(Tensor::cat(&[&semantic, &acoustic], 1)?)
    }

    /// Codes `[B, n_q, T]` (in range, `1 <= n_q <= max`) -> latents `[B, D, T]`.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let n_q = codes.dim(1)?;
        let head = n_q.min(self.n_semantic);
        let latents = self.semantic.decode(&codes.narrow(1, 0, head)?)?;
        if n_q <= self.n_semantic {
            return Ok(latents);
        }
        let rest = self.acoustic.decode(&codes.narrow(1, head, n_q - head)?)?;
        Ok((latents + rest)?)
    }
}
