//! Lookup-free quantization (Yu et al. 2023, MAGVIT-v2, "Language Model Beats Diffusion"): each
//! latent channel is quantized to its sign, and the signs, read as bits, are the code. The
//! codebook is implicit: `{-s, +s}^bits`.

use super::{Projection, Quantizer, projection, rows, validate};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// Which channel is the most significant bit of a code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BitOrder {
    /// Channel 0 is the most significant bit (vector-quantize-pytorch's `LFQ`).
    #[default]
    MsbFirst,
    /// Channel 0 is the least significant bit (the sum `2^k * bit_k` of the MAGVIT-v2 paper).
    LsbFirst,
}

/// LFQ over `bits` channels (`2^bits` codes), optionally with projections from the latent
/// dimension to `bits` channels and back.
///
/// A channel is 1 when its value is `> 0` (zero and NaN give 0); decoding maps bit `b` to
/// `(2b - 1) * scale`, the codebook scale (1 unless set: residual LFQ shrinks it per stage).
#[derive(Clone, Debug)]
pub struct Lfq {
    bits: usize,
    scale: f64,
    bit_order: BitOrder,
    projections: Option<(Projection, Projection)>,
    device: Device,
    /// `[1, bits]` u32: the place value of each channel's bit.
    place_values: Tensor,
}

impl Lfq {
    /// LFQ over `bits` channels, 1..=32, with scale 1 and [`BitOrder::MsbFirst`].
    pub fn new(bits: usize, device: &Device) -> Result<Self> {
        if !(1..=32).contains(&bits) {
            return Err(Error::invalid(format!(
                "LFQ needs 1 to 32 bits for u32 codes, got {bits}"
            )));
        }
        let mut lfq = Self {
            bits,
            scale: 1.0,
            bit_order: BitOrder::MsbFirst,
            projections: None,
            device: device.clone(),
            place_values: Tensor::zeros((1, bits), DType::U32, device)?,
        };
        lfq.place_values = lfq.place_values_for(BitOrder::MsbFirst)?;
        Ok(lfq)
    }

    /// Sets the value magnitude of the implicit codebook (positive and finite).
    pub fn with_codebook_scale(mut self, scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid(format!(
                "LFQ codebook scale must be positive and finite, got {scale}"
            )));
        }
        self.scale = scale;
        Ok(self)
    }

    pub fn with_bit_order(mut self, bit_order: BitOrder) -> Result<Self> {
        self.place_values = self.place_values_for(bit_order)?;
        self.bit_order = bit_order;
        Ok(self)
    }

    /// Adds projections: `in_proj` maps latents to `bits` channels, `out_proj` back.
    pub fn with_projections(mut self, in_proj: Projection, out_proj: Projection) -> Result<Self> {
        projection::check_pair(&in_proj, &out_proj, self.bits, &self.device, "LFQ")?;
        self.projections = Some((in_proj, out_proj));
        Ok(self)
    }

    /// Loads the optional projections `project_in`/`project_out` (vector-quantize-pytorch's
    /// names) under `vb`.
    pub fn load(vb: &VarBuilder, bits: usize) -> Result<Self> {
        let lfq = Self::new(bits, vb.device())?;
        match Projection::load_pair(vb, "project_in", "project_out")? {
            Some((in_proj, out_proj)) => lfq.with_projections(in_proj, out_proj),
            None => Ok(lfq),
        }
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    pub fn codebook_scale(&self) -> f64 {
        self.scale
    }

    pub fn bit_order(&self) -> BitOrder {
        self.bit_order
    }

    pub fn projections(&self) -> Option<(&Projection, &Projection)> {
        self.projections.as_ref().map(|(i, o)| (i, o))
    }

    /// Codes `[batch, frames]` and the quantized latents `[batch, dim, frames]` (equal to
    /// `decode(codes)`).
    pub fn quantize(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (batch, frames) = validate::latents(x, self.dim(), &self.device, "LFQ")?;
        if batch * frames == 0 {
            return Ok((
                Tensor::zeros((batch, frames), DType::U32, &self.device)?,
                Tensor::zeros((batch, self.dim(), frames), self.out_dtype(), &self.device)?,
            ));
        }
        let bits = self.bits_of(&rows::to_rows(x)?)?;
        let codes = bits.broadcast_mul(&self.place_values)?.sum(1)?;
        let latents = self.project_out(&self.values_of_bits(&bits)?)?;
        Ok((
            codes.reshape((batch, frames))?,
            rows::from_rows(&latents, batch, frames)?,
        ))
    }

    fn place_values_for(&self, order: BitOrder) -> Result<Tensor> {
        let values: Vec<u32> = (0..self.bits)
            .map(|channel| {
                let position = match order {
                    BitOrder::MsbFirst => self.bits - 1 - channel,
                    BitOrder::LsbFirst => channel,
                };
                1u32 << position
            })
            .collect();
        Ok(Tensor::from_vec(values, (1, self.bits), &self.device)?)
    }

    /// Bits `[n, bits]` (u32, 0 or 1) of latent rows `[n, dim]`.
    fn bits_of(&self, x: &Tensor) -> Result<Tensor> {
        let z = match &self.projections {
            Some((in_proj, _)) => in_proj.forward_rows(x)?,
            None => x.clone(),
        };
        Ok(z.gt(0.0)?.to_dtype(DType::U32)?)
    }

    /// Bits `[n, bits]` of in-range codes `[n]`.
    fn bits_of_codes(&self, codes: &Tensor) -> Result<Tensor> {
        let above = codes.unsqueeze(1)?.broadcast_div(&self.place_values)?;
        let two = Tensor::new(&[[2u32]], &self.device)?;
        Ok((&above - above.broadcast_div(&two)?.broadcast_mul(&two)?)?)
    }

    /// `(2b - 1) * scale`, f32, computed as the reference does: `b * scale * 2 - scale`.
    fn values_of_bits(&self, bits: &Tensor) -> Result<Tensor> {
        Ok(bits
            .to_dtype(DType::F32)?
            .affine(self.scale, 0.0)?
            .affine(2.0, -self.scale)?)
    }

    fn project_out(&self, values: &Tensor) -> Result<Tensor> {
        match &self.projections {
            Some((_, out_proj)) => out_proj.forward_rows(values),
            None => Ok(values.clone()),
        }
    }

    fn out_dtype(&self) -> DType {
        match &self.projections {
            Some((_, out_proj)) => out_proj.dtype(),
            None => DType::F32,
        }
    }
}

impl Quantizer for Lfq {
    /// `[batch, dim, frames]` to codes `[batch, frames]`.
    fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, frames) = validate::latents(x, self.dim(), &self.device, "LFQ")?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros((batch, frames), DType::U32, &self.device)?);
        }
        let bits = self.bits_of(&rows::to_rows(x)?)?;
        let codes = bits.broadcast_mul(&self.place_values)?.sum(1)?;
        Ok(codes.reshape((batch, frames))?)
    }

    /// Codes `[batch, frames]` to latents `[batch, dim, frames]`.
    fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        validate::codes(codes, "[batch, frames]", 2, &self.device, "LFQ")?;
        let (batch, frames) = codes.dims2()?;
        validate::code_range(codes, self.codebook_size(), "LFQ")?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros(
                (batch, self.dim(), frames),
                self.out_dtype(),
                &self.device,
            )?);
        }
        let bits = self.bits_of_codes(&codes.flatten_all()?)?;
        let latents = self.project_out(&self.values_of_bits(&bits)?)?;
        rows::from_rows(&latents, batch, frames)
    }

    /// `2^bits`.
    fn codebook_size(&self) -> usize {
        // 2^32 does not fit a 32-bit usize; no code can reach it there anyway.
        usize::try_from(1u64 << self.bits).unwrap_or(usize::MAX)
    }

    fn dim(&self) -> usize {
        match &self.projections {
            Some((in_proj, _)) => in_proj.in_dim(),
            None => self.bits,
        }
    }
}
