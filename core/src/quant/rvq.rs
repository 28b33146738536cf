//! Residual vector quantization (SoundStream, Algorithm 1): each stage quantizes what the stages
//! before it left over; the latents are the sum of the stages' outputs.

use super::{Projection, Quantizer, VectorQuantizer, VqLayout, projection, rows, validate};
use crate::{Error, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

/// A stack of [`VectorQuantizer`] stages sharing one codebook size, optionally wrapped in
/// projections applied once around the whole stack (Mimi's `input_proj`/`output_proj`).
#[derive(Clone, Debug)]
pub struct ResidualVectorQuantizer {
    stages: Vec<VectorQuantizer>,
    projections: Option<(Projection, Projection)>,
}

impl ResidualVectorQuantizer {
    /// Stages in order; at least one, all of the same latent dimension, codebook size and device.
    pub fn new(stages: Vec<VectorQuantizer>) -> Result<Self> {
        let Some(first) = stages.first() else {
            return Err(Error::invalid(
                "residual quantizer needs at least one stage",
            ));
        };
        for (i, stage) in stages.iter().enumerate().skip(1) {
            if stage.dim() != first.dim() || stage.codebook_size() != first.codebook_size() {
                return Err(Error::invalid(format!(
                    "residual quantizer stage {i} takes dim {} with {} codes, \
                     but stage 0 takes dim {} with {} codes",
                    stage.dim(),
                    stage.codebook_size(),
                    first.dim(),
                    first.codebook_size()
                )));
            }
            if !stage.device().same_device(first.device()) {
                return Err(Error::invalid(format!(
                    "residual quantizer stage {i} is on another device than stage 0"
                )));
            }
        }
        Ok(Self {
            stages,
            projections: None,
        })
    }

    /// Wraps the stack: `in_proj` maps latents to the stages' dimension once before the first
    /// stage, `out_proj` maps the sum of the stages back.
    pub fn with_projections(mut self, in_proj: Projection, out_proj: Projection) -> Result<Self> {
        let inner = self.stages[0].dim();
        projection::check_pair(
            &in_proj,
            &out_proj,
            inner,
            self.device(),
            "residual quantizer",
        )?;
        self.projections = Some((in_proj, out_proj));
        Ok(self)
    }

    /// Loads `n_q` stages from `{stages}.0` .. `{stages}.{n_q - 1}` under `vb`, e.g.
    /// `load(&vb.pp("quantizer"), "quantizers", 9, &VqLayout::DAC)`.
    pub fn load(vb: &VarBuilder, stages: &str, n_q: usize, layout: &VqLayout) -> Result<Self> {
        let stages_vb = vb.pp(stages);
        let stages = (0..n_q)
            .map(|i| VectorQuantizer::load(&stages_vb.pp(i), layout))
            .collect::<Result<Vec<_>>>()?;
        Self::new(stages)
    }

    pub fn stages(&self) -> &[VectorQuantizer] {
        &self.stages
    }

    /// Number of stages: the most codebooks that `encode_n` can use.
    pub fn max_quantizers(&self) -> usize {
        self.stages.len()
    }

    pub fn projections(&self) -> Option<(&Projection, &Projection)> {
        self.projections.as_ref().map(|(i, o)| (i, o))
    }

    fn device(&self) -> &Device {
        self.stages[0].device()
    }

    fn dtype(&self) -> DType {
        self.stages[0].dtype()
    }

    fn out_dtype(&self) -> DType {
        match &self.projections {
            Some((_, out_proj)) => out_proj.dtype(),
            None => self.stages[0].out_dtype(),
        }
    }

    /// Codes `[batch, n_q, frames]` from the first `n_q` stages (1 <= n_q <= max); the later
    /// stages are not run.
    pub fn encode_n(&self, x: &Tensor, n_q: usize) -> Result<Tensor> {
        let (batch, frames) = self.check_latents(x, n_q)?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros(
                (batch, n_q, frames),
                DType::U32,
                self.device(),
            )?);
        }
        if let Some(codes) = self.encode_cpu(x, n_q, batch, frames)? {
            return Ok(codes);
        }
        let mut residual = self.project_in(x)?;
        let mut codes = Vec::with_capacity(n_q);
        for (i, stage) in self.stages[..n_q].iter().enumerate() {
            if i + 1 == n_q {
                codes.push(stage.encode_rows(&residual)?);
            } else {
                let (stage_codes, quantized) = stage.quantize_rows(&residual)?;
                residual = (residual - quantized)?;
                codes.push(stage_codes);
            }
        }
        stack_codes(&codes, batch, frames)
    }

    /// Codes `[batch, n_q, frames]` and the sum of the first `n_q` stages' outputs
    /// `[batch, dim, frames]`, as a codec's forward pass computes them.
    pub fn quantize(&self, x: &Tensor, n_q: usize) -> Result<(Tensor, Tensor)> {
        let who = "residual quantizer";
        let (batch, frames) = self.check_latents(x, n_q)?;
        if batch * frames == 0 {
            return Ok((
                Tensor::zeros((batch, n_q, frames), DType::U32, self.device())?,
                Tensor::zeros((batch, self.dim(), frames), self.out_dtype(), self.device())?,
            ));
        }
        let mut residual = self.project_in(x)?;
        let mut codes = Vec::with_capacity(n_q);
        let mut sum: Option<Tensor> = None;
        for stage in &self.stages[..n_q] {
            let (stage_codes, quantized) = stage.quantize_rows(&residual)?;
            residual = (residual - &quantized)?;
            sum = Some(match sum {
                Some(sum) => (sum + quantized)?,
                None => quantized,
            });
            codes.push(stage_codes);
        }
        let sum = sum.ok_or_else(|| Error::invalid(format!("{who}: no stage ran")))?;
        Ok((
            stack_codes(&codes, batch, frames)?,
            rows::from_rows(&self.project_out(&sum)?, batch, frames)?,
        ))
    }

    fn check_latents(&self, x: &Tensor, n_q: usize) -> Result<(usize, usize)> {
        let who = "residual quantizer";
        if n_q == 0 || n_q > self.stages.len() {
            return Err(Error::invalid(format!(
                "{who}: cannot use {n_q} quantizers, it has 1 to {}",
                self.stages.len()
            )));
        }
        validate::latents(x, self.dim(), self.device(), who)
    }

    /// The first `n_q` stages' CPU searches, when there are no projections around the stack
    /// and every one of those stages has one.
    fn cpu_searches(&self, n_q: usize) -> Option<Vec<&super::distance::NearestSearch>> {
        if self.projections.is_some() {
            return None;
        }
        self.stages[..n_q]
            .iter()
            .map(VectorQuantizer::cpu_search)
            .collect()
    }

    /// [`Self::encode_n`] in plain buffers when every stage can search on the CPU (EnCodec's
    /// Euclidean f32 codebooks without projections), else `None`. Through tensors, each stage
    /// made five small element-wise ops, which candle runs on its own thread pool: its workers
    /// spinning between them took a core from the rayon pool running the products, and the
    /// quantizer took 20-60 ms per 10 s of EnCodec instead of about 10.
    fn encode_cpu(
        &self,
        x: &Tensor,
        n_q: usize,
        batch: usize,
        frames: usize,
    ) -> Result<Option<Tensor>> {
        let Some(searches) = self.cpu_searches(n_q) else {
            return Ok(None);
        };
        if x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Ok(None);
        }
        let mut residual = rows::to_rows(x)?.flatten_all()?.to_vec1::<f32>()?;
        let mut entries = vec![0f32; residual.len()];
        let mut codes = vec![0u32; batch * n_q * frames];
        for (i, search) in searches.iter().enumerate() {
            let last = i + 1 == n_q;
            let stage_codes = search
                .nearest_cpu(&residual, (!last).then_some(&mut entries[..]))
                .ok_or_else(|| Error::invalid("residual quantizer: CPU search unavailable"))?;
            for (r, &c) in stage_codes.iter().enumerate() {
                codes[((r / frames) * n_q + i) * frames + r % frames] = c;
            }
            if !last {
                for (v, &e) in residual.iter_mut().zip(&entries) {
                    *v -= e;
                }
            }
        }
        Ok(Some(Tensor::from_vec(
            codes,
            (batch, n_q, frames),
            x.device(),
        )?))
    }

    /// [`Quantizer::decode`] in plain buffers under the conditions of [`Self::encode_cpu`]:
    /// per frame, the stages' entries summed in stage order (the tensor path's additions), written
    /// straight into `[batch, dim, frames]`. Codes are in range (checked by the caller).
    fn decode_cpu(
        &self,
        codes: &Tensor,
        n_q: usize,
        batch: usize,
        frames: usize,
    ) -> Result<Option<Tensor>> {
        let Some(searches) = self.cpu_searches(n_q) else {
            return Ok(None);
        };
        if !codes.device().is_cpu() {
            return Ok(None);
        }
        let dim = self.dim();
        let codes = codes
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let mut out = vec![0f32; batch * dim * frames];
        let mut sum = vec![0f32; dim];
        let mut entry = vec![0f32; dim];
        for b in 0..batch {
            for t in 0..frames {
                for (i, search) in searches.iter().enumerate() {
                    let code = codes[(b * n_q + i) * frames + t] as usize;
                    let dst = if i == 0 { &mut sum } else { &mut entry };
                    if !search.entry_cpu(code, dst) {
                        return Ok(None);
                    }
                    if i > 0 {
                        for (s, &e) in sum.iter_mut().zip(&entry) {
                            *s += e;
                        }
                    }
                }
                for (d, &v) in sum.iter().enumerate() {
                    out[(b * dim + d) * frames + t] = v;
                }
            }
        }
        Ok(Some(Tensor::from_vec(
            out,
            (batch, dim, frames),
            &Device::Cpu,
        )?))
    }

    /// Latent rows in the stages' space.
    fn project_in(&self, x: &Tensor) -> Result<Tensor> {
        let x = rows::to_rows(x)?.to_dtype(self.dtype())?;
        match &self.projections {
            Some((in_proj, _)) => in_proj.forward_rows(&x),
            None => Ok(x),
        }
    }

    fn project_out(&self, rows: &Tensor) -> Result<Tensor> {
        match &self.projections {
            Some((_, out_proj)) => out_proj.forward_rows(rows),
            None => Ok(rows.clone()),
        }
    }
}

/// Per-stage codes `[batch * frames]` to `[batch, n_q, frames]`.
fn stack_codes(codes: &[Tensor], batch: usize, frames: usize) -> Result<Tensor> {
    Ok(Tensor::stack(codes, 0)?
        .reshape((codes.len(), batch, frames))?
        .transpose(0, 1)?
        .contiguous()?)
}

impl Quantizer for ResidualVectorQuantizer {
    /// `[batch, dim, frames]` to codes `[batch, n_q, frames]` with every stage.
    fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.encode_n(x, self.stages.len())
    }

    /// Codes `[batch, n, frames]` to latents `[batch, dim, frames]`: the sum of the first `n`
    /// stages' entries (1 <= n <= max).
    fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let who = "residual quantizer";
        validate::codes(codes, "[batch, n_q, frames]", 3, self.device(), who)?;
        let (batch, n_q, frames) = codes.dims3()?;
        if n_q == 0 || n_q > self.stages.len() {
            return Err(Error::invalid(format!(
                "{who}: codes have {n_q} codebooks, the quantizer has 1 to {}",
                self.stages.len()
            )));
        }
        validate::code_range(codes, self.codebook_size(), who)?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros(
                (batch, self.dim(), frames),
                self.out_dtype(),
                self.device(),
            )?);
        }
        if let Some(latents) = self.decode_cpu(codes, n_q, batch, frames)? {
            return Ok(latents);
        }
        let mut sum: Option<Tensor> = None;
        for (i, stage) in self.stages[..n_q].iter().enumerate() {
            let stage_codes = codes.i((.., i, ..))?.flatten_all()?;
            let latents = stage.decode_rows(&stage_codes)?;
            sum = Some(match sum {
                Some(sum) => (sum + latents)?,
                None => latents,
            });
        }
        let sum = sum.ok_or_else(|| Error::invalid(format!("{who}: no stage ran")))?;
        rows::from_rows(&self.project_out(&sum)?, batch, frames)
    }

    fn codebook_size(&self) -> usize {
        self.stages[0].codebook_size()
    }

    fn dim(&self) -> usize {
        match &self.projections {
            Some((in_proj, _)) => in_proj.in_dim(),
            None => self.stages[0].dim(),
        }
    }
}
