//! Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
//! Simple"): each latent channel is squashed into a fixed number of levels and rounded; the code
//! is the mixed-radix number whose digits are the channels' levels. No codebook is learned.

use super::{Projection, Quantizer, projection, rows, validate};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// Largest number of levels of one channel; far above any published configuration, and small
/// enough that rounding by the 1.5 * 2^23 trick below stays exact.
const MAX_LEVEL: u32 = 1 << 16;

/// FSQ with `levels[i]` levels on channel `i`, optionally with projections from the latent
/// dimension to `levels.len()` channels and back (as vector-quantize-pytorch's `FSQ` adds when
/// `dim` differs from the number of levels).
///
/// Encoding computes `tanh(z + shift) * half_l - offset` per channel, with
/// `half_l = (L - 1) * 1.001 / 2`, `offset = 0.5` for even `L` (else 0) and
/// `shift = atanh(offset / half_l)`, then rounds half to even. The code is
/// `sum_i (round_i + L_i / 2) * prod_{j<i} L_j` (channel 0 is the least significant digit), and
/// the value of channel `i` is `round_i / (L_i / 2)` (integer division in the denominator), in
/// `[-1, 1]`.
#[derive(Clone, Debug)]
pub struct Fsq {
    levels: Vec<u32>,
    codebook_size: usize,
    projections: Option<(Projection, Projection)>,
    device: Device,
    /// `[1, channels]` f32 constants of the bound: `shift`, `half_l`, `offset`, and the half
    /// width `L / 2` that rounded values are divided by.
    shift: Tensor,
    half_l: Tensor,
    offset: Tensor,
    half_width: Tensor,
    /// `[1, channels]` u32: levels and the mixed-radix place values.
    levels_u32: Tensor,
    basis: Tensor,
}

impl Fsq {
    /// FSQ with the given levels per channel (each in 2..=65536, product at most 2^32), without
    /// projections.
    pub fn new(levels: &[u32], device: &Device) -> Result<Self> {
        if levels.is_empty() {
            return Err(Error::invalid("FSQ needs at least one level count"));
        }
        if let Some(bad) = levels.iter().find(|&&l| !(2..=MAX_LEVEL).contains(&l)) {
            return Err(Error::invalid(format!(
                "FSQ levels must be between 2 and {MAX_LEVEL}, got {bad} in {levels:?}"
            )));
        }
        let mut basis = Vec::with_capacity(levels.len());
        let mut size: u64 = 1;
        for &l in levels {
            basis.push(size);
            size = size
                .checked_mul(u64::from(l))
                .filter(|&s| s <= 1 << 32)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "FSQ levels {levels:?} give more than 2^32 codes, which u32 cannot hold"
                    ))
                })?;
        }
        let codebook_size = usize::try_from(size)
            .map_err(|_| Error::invalid(format!("FSQ levels {levels:?} give too many codes")))?;

        // The same f32 operations as the reference, in the same order.
        let half_l: Vec<f32> = levels
            .iter()
            .map(|&l| (l - 1) as f32 * 1.001_f32 / 2.0)
            .collect();
        let offset: Vec<f32> = levels
            .iter()
            .map(|&l| if l.is_multiple_of(2) { 0.5 } else { 0.0 })
            .collect();
        let shift: Vec<f32> = offset
            .iter()
            .zip(&half_l)
            .map(|(&o, &h)| (o / h).atanh())
            .collect();
        let half_width: Vec<f32> = levels.iter().map(|&l| (l / 2) as f32).collect();
        // Place values below 2^32 fit u32: the last one is at most size / 2.
        let basis: Vec<u32> = basis.iter().map(|&b| b as u32).collect();

        let row = |v: Vec<f32>| Tensor::from_vec(v, (1, levels.len()), device);
        let row_u32 = |v: Vec<u32>| Tensor::from_vec(v, (1, levels.len()), device);
        Ok(Self {
            levels: levels.to_vec(),
            codebook_size,
            projections: None,
            device: device.clone(),
            shift: row(shift)?,
            half_l: row(half_l)?,
            offset: row(offset)?,
            half_width: row(half_width)?,
            levels_u32: row_u32(levels.to_vec())?,
            basis: row_u32(basis)?,
        })
    }

    /// Adds projections: `in_proj` maps latents to `levels.len()` channels, `out_proj` back.
    pub fn with_projections(mut self, in_proj: Projection, out_proj: Projection) -> Result<Self> {
        projection::check_pair(&in_proj, &out_proj, self.levels.len(), &self.device, "FSQ")?;
        self.projections = Some((in_proj, out_proj));
        Ok(self)
    }

    /// Loads the optional projections `project_in`/`project_out` (vector-quantize-pytorch's
    /// names) under `vb`.
    pub fn load(vb: &VarBuilder, levels: &[u32]) -> Result<Self> {
        let fsq = Self::new(levels, vb.device())?;
        match Projection::load_pair(vb, "project_in", "project_out")? {
            Some((in_proj, out_proj)) => fsq.with_projections(in_proj, out_proj),
            None => Ok(fsq),
        }
    }

    pub fn levels(&self) -> &[u32] {
        &self.levels
    }

    pub fn projections(&self) -> Option<(&Projection, &Projection)> {
        self.projections.as_ref().map(|(i, o)| (i, o))
    }

    /// Codes `[batch, frames]` and the quantized latents `[batch, dim, frames]` (equal to
    /// `decode(codes)`).
    pub fn quantize(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (batch, frames) = validate::latents(x, self.dim(), &self.device, "FSQ")?;
        if batch * frames == 0 {
            return Ok((
                Tensor::zeros((batch, frames), DType::U32, &self.device)?,
                Tensor::zeros((batch, self.dim(), frames), self.out_dtype(x), &self.device)?,
            ));
        }
        let (codes, values) = self.quantize_rows(&rows::to_rows(x)?)?;
        let latents = self.project_out(&values)?;
        Ok((
            codes.reshape((batch, frames))?,
            rows::from_rows(&latents, batch, frames)?,
        ))
    }

    /// Codes `[n]` and channel values `[n, channels]` of latent rows `[n, dim]`.
    fn quantize_rows(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let z = match &self.projections {
            Some((in_proj, _)) => in_proj.forward_rows(x)?,
            None => x.clone(),
        };
        // Quantization runs in f32 (f64 stays f64), as the reference forces it.
        let dtype = compute_dtype(z.dtype());
        let z = z.to_dtype(dtype)?;
        let constant = |t: &Tensor| t.to_dtype(dtype);
        let bounded = z
            .broadcast_add(&constant(&self.shift)?)?
            .tanh()?
            .broadcast_mul(&constant(&self.half_l)?)?
            .broadcast_sub(&constant(&self.offset)?)?;
        let rounded = round_half_even(&bounded)?;
        let half_width = constant(&self.half_width)?;
        let values = rounded.broadcast_div(&half_width)?;
        let digits = rounded.broadcast_add(&half_width)?.to_dtype(DType::U32)?;
        let codes = digits.broadcast_mul(&self.basis)?.sum(1)?;
        Ok((codes, values))
    }

    /// Channel values `[n, channels]` of in-range codes `[n]`.
    fn values_of(&self, codes: &Tensor) -> Result<Tensor> {
        let codes = codes.unsqueeze(1)?;
        let above = codes.broadcast_div(&self.basis)?;
        let digits = (&above
            - above
                .broadcast_div(&self.levels_u32)?
                .broadcast_mul(&self.levels_u32)?)?;
        let half_width = &self.half_width;
        Ok(digits
            .to_dtype(DType::F32)?
            .broadcast_sub(half_width)?
            .broadcast_div(half_width)?)
    }

    fn project_out(&self, values: &Tensor) -> Result<Tensor> {
        match &self.projections {
            Some((_, out_proj)) => out_proj.forward_rows(values),
            None => Ok(values.clone()),
        }
    }

    fn out_dtype(&self, x: &Tensor) -> DType {
        match &self.projections {
            Some((_, out_proj)) => out_proj.dtype(),
            None => compute_dtype(x.dtype()),
        }
    }
}

impl Quantizer for Fsq {
    /// `[batch, dim, frames]` to codes `[batch, frames]`.
    fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, frames) = validate::latents(x, self.dim(), &self.device, "FSQ")?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros((batch, frames), DType::U32, &self.device)?);
        }
        let (codes, _) = self.quantize_rows(&rows::to_rows(x)?)?;
        Ok(codes.reshape((batch, frames))?)
    }

    /// Codes `[batch, frames]` to latents `[batch, dim, frames]`.
    fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        validate::codes(codes, "[batch, frames]", 2, &self.device, "FSQ")?;
        let (batch, frames) = codes.dims2()?;
        validate::code_range(codes, self.codebook_size, "FSQ")?;
        if batch * frames == 0 {
            let dtype = match &self.projections {
                Some((_, out_proj)) => out_proj.dtype(),
                None => DType::F32,
            };
            return Ok(Tensor::zeros(
                (batch, self.dim(), frames),
                dtype,
                &self.device,
            )?);
        }
        let values = self.values_of(&codes.flatten_all()?)?;
        rows::from_rows(&self.project_out(&values)?, batch, frames)
    }

    fn codebook_size(&self) -> usize {
        self.codebook_size
    }

    fn dim(&self) -> usize {
        match &self.projections {
            Some((in_proj, _)) => in_proj.in_dim(),
            None => self.levels.len(),
        }
    }
}

fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// Rounds half to even, as `torch.round` does (candle's `round` rounds half away from zero).
/// Adding and subtracting 1.5 * 2^(mantissa bits) leaves the float unit to round, which it does
/// to nearest even; exact for |x| < 2^22 (f32), far beyond the at most 2^15 that FSQ produces.
pub(crate) fn round_half_even(x: &Tensor) -> Result<Tensor> {
    let magic = match x.dtype() {
        DType::F64 => 6_755_399_441_055_744.0, // 1.5 * 2^52
        _ => 12_582_912.0,                     // 1.5 * 2^23
    };
    Ok(x.affine(1.0, magic)?.affine(1.0, -magic)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_constants_are_bit_identical_to_the_reference() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant");
        for name in ["fsq", "fsq_proj"] {
            let path = dir.join(format!("{name}.safetensors"));
            let fixture = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
            let levels: Vec<u32> = fixture["levels"]
                .to_dtype(DType::U32)
                .unwrap()
                .to_vec1()
                .unwrap();
            let fsq = Fsq::new(&levels, &Device::Cpu).unwrap();
            for (ours, key) in [
                (&fsq.half_l, "half_l"),
                (&fsq.offset, "offset"),
                (&fsq.shift, "shift"),
            ] {
                let ours: Vec<u32> = ours
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let reference: Vec<u32> = fixture[key]
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(ours, reference, "{name}: {key} for levels {levels:?}");
            }
        }
    }

    #[test]
    fn rounds_half_to_even_like_torch() {
        let values = [
            -2.5f32,
            -1.5,
            -0.5,
            0.5,
            1.5,
            2.5,
            3.5,
            -3.49,
            0.49999997,
            1e6 + 0.5,
        ];
        let expected = [-2.0f32, -2.0, -0.0, 0.0, 2.0, 2.0, 4.0, -3.0, 0.0, 1e6];
        let x = Tensor::new(&values, &Device::Cpu).unwrap();
        let rounded = round_half_even(&x).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rounded, expected);
        let x64 = x.to_dtype(DType::F64).unwrap();
        let rounded64 = round_half_even(&x64).unwrap().to_vec1::<f64>().unwrap();
        let expected64: Vec<f64> = expected.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(rounded64, expected64);
    }
}
