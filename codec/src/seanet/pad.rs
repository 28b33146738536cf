//! Padding of the SEANet convolutions, as the reference's `_pad1d` does it.

use candle_core::{DType, Storage, Tensor};
use tessera_core::{Error, Result};

/// How a convolution's input is extended beyond its ends (torch `F.pad` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Zeros.
    Constant,
    /// Mirror without repeating the edge sample.
    Reflect,
    /// Repeat the edge sample.
    Replicate,
}

impl PadMode {
    /// The mode named in a config (`pad_mode`), as torch spells it.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "constant" => Ok(PadMode::Constant),
            "reflect" => Ok(PadMode::Reflect),
            "replicate" => Ok(PadMode::Replicate),
            other => Err(Error::config(format!(
                "pad_mode = '{other}' is not supported (expected constant, reflect or replicate)"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Replicate => "replicate",
        }
    }
}

/// `x [B, C, L]` extended by `left` and `right` samples. Reflection of a signal no longer than
/// the padding first appends zeros (then drops them again from the result), which is how the
/// reference makes `F.pad(mode="reflect")` work on short inputs.
pub(crate) fn pad1d(
    x: &Tensor,
    left: usize,
    right: usize,
    mode: PadMode,
) -> candle_core::Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    match mode {
        PadMode::Constant => x.pad_with_zeros(2, left, right),
        PadMode::Replicate => x.pad_with_same(2, left, right),
        PadMode::Reflect => {
            let len = x.dim(2)?;
            let max_pad = left.max(right);
            if len <= max_pad {
                let extra = max_pad - len + 1;
                let padded = reflect(&x.pad_with_zeros(2, 0, extra)?, left, right)?;
                let keep = padded.dim(2)? - extra;
                padded.narrow(2, 0, keep)
            } else {
                reflect(x, left, right)
            }
        }
    }
}

/// `F.pad(x, (left, right), "reflect")`; needs `left, right < L`.
fn reflect(x: &Tensor, left: usize, right: usize) -> candle_core::Result<Tensor> {
    let len = x.dim(2)?;
    if left >= len || right >= len {
        candle_core::bail!("reflect padding of {left}/{right} needs more than {len} samples");
    }
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        // One pass over the rows: candle's index_select gathers element by element and made
        // reflect padding about a sixth of EnCodec's whole encode time.
        let x = x.contiguous()?;
        let (b, c, _) = x.dims3()?;
        let (storage, layout) = x.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            let data = &cpu.as_slice::<f32>()?[start..end];
            let n = left + len + right;
            let mut out = Vec::with_capacity(b * c * n);
            for row in data.chunks_exact(len) {
                out.extend((0..left).map(|i| row[left - i]));
                out.extend_from_slice(row);
                out.extend((0..right).map(|j| row[len - 2 - j]));
            }
            return Tensor::from_vec(out, (b, c, n), x.device());
        }
    }
    let idx: Vec<u32> = (0..left)
        .map(|i| (left - i) as u32)
        .chain((0..len).map(|i| i as u32))
        .chain((0..right).map(|j| (len - 2 - j) as u32))
        .collect();
    let idx = Tensor::from_vec(idx, left + len + right, x.device())?;
    x.contiguous()?.index_select(&idx, 2)
}

/// `right` samples that continue `x [B, C, L]` past its end in `mode`, where `x` ends with the
/// last samples of the signal (at least `right + 1` of them for reflection).
pub(crate) fn right_extension(
    x: &Tensor,
    right: usize,
    mode: PadMode,
) -> candle_core::Result<Tensor> {
    let (b, c, len) = x.dims3()?;
    match mode {
        PadMode::Constant => {
            Tensor::zeros((b, c, right), DType::F32, x.device())?.to_dtype(x.dtype())
        }
        PadMode::Replicate => x.narrow(2, len - 1, 1)?.repeat((1, 1, right)),
        PadMode::Reflect => {
            if right >= len {
                candle_core::bail!("reflect padding of {right} needs more than {len} samples");
            }
            let idx: Vec<u32> = (0..right).map(|j| (len - 2 - j) as u32).collect();
            let idx = Tensor::from_vec(idx, right, x.device())?;
            x.contiguous()?.index_select(&idx, 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn row(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, (1, 1, v.len()), &Device::Cpu).unwrap()
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn modes_match_torch() {
        let x = row(&[1., 2., 3., 4.]);
        assert_eq!(
            vals(&pad1d(&x, 2, 1, PadMode::Reflect).unwrap()),
            [3., 2., 1., 2., 3., 4., 3.]
        );
        assert_eq!(
            vals(&pad1d(&x, 2, 1, PadMode::Replicate).unwrap()),
            [1., 1., 1., 2., 3., 4., 4.]
        );
        assert_eq!(
            vals(&pad1d(&x, 1, 2, PadMode::Constant).unwrap()),
            [0., 1., 2., 3., 4., 0., 0.]
        );
        // Short input: zeros appended before reflecting, dropped after (reference `_pad1d`).
        // x' = [1, 2, 0, 0], reflect (3, 1) -> [0, 0, 2, 1, 2, 0, 0, 0], minus the 2 extra.
        let x = row(&[1., 2.]);
        assert_eq!(
            vals(&pad1d(&x, 3, 1, PadMode::Reflect).unwrap()),
            [0., 0., 2., 1., 2., 0.]
        );
        assert_eq!(
            vals(&right_extension(&row(&[1., 2., 3.]), 2, PadMode::Reflect).unwrap()),
            [2., 1.]
        );
        assert!(PadMode::parse("circular").is_err());
    }
}
