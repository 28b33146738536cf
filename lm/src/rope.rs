//! Rotary position embedding, with Llama 3 and linear frequency scaling and partial rotation.
//!
//! Frequencies and angles are computed in f32 exactly as transformers computes them (f32
//! `inv_freq`, f32 `position * inv_freq`), then cast to the model dtype, so that angles at long
//! positions agree with the reference. Tables are built per forward call for the positions it
//! covers: no table sized by `max_position_embeddings` is ever allocated.

use candle_core::{DType, Device, Tensor};

use crate::config::{RopeConfig, RopeScaling};

/// The inverse frequencies of one kind of layer.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    rotary_dim: usize,
}

impl Rope {
    pub fn new(cfg: &RopeConfig) -> Self {
        let dim = cfg.rotary_dim;
        let base = cfg.theta as f32;
        let mut inv_freq: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        match cfg.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= factor as f32;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => {
                let low_freq_wavelen = old_len / low_freq_factor;
                let high_freq_wavelen = old_len / high_freq_factor;
                let factor = factor as f32;
                for f in &mut inv_freq {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    if (wavelen as f64) > low_freq_wavelen {
                        *f /= factor;
                    } else if (wavelen as f64) >= high_freq_wavelen {
                        // Between the two wavelengths: interpolate between scaled and unscaled.
                        let smooth = ((old_len as f32 / wavelen) - low_freq_factor as f32)
                            / (high_freq_factor - low_freq_factor) as f32;
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        Rope {
            inv_freq,
            rotary_dim: dim,
        }
    }

    pub fn rotary_dim(&self) -> usize {
        self.rotary_dim
    }

    /// cos/sin for positions `start..start + len`, in `dtype` on `device`.
    pub fn tables(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<RopeTables> {
        let half = self.inv_freq.len();
        if half == 0 {
            return Ok(RopeTables {
                cos: None,
                sin: None,
                cos_f32: Vec::new(),
                sin_f32: Vec::new(),
                rotary_dim: 0,
            });
        }
        let mut angles = Vec::with_capacity(len * half);
        for p in start..start + len {
            let p = p as f32;
            angles.extend(self.inv_freq.iter().map(|f| p * f));
        }
        let cos_f32: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin_f32: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let cos = Tensor::from_slice(&cos_f32, (len, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_slice(&sin_f32, (len, half), device)?.to_dtype(dtype)?;
        Ok(RopeTables {
            cos: Some(cos),
            sin: Some(sin),
            cos_f32,
            sin_f32,
            rotary_dim: self.rotary_dim,
        })
    }
}

/// cos/sin of the positions of one forward call.
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Option<Tensor>,
    sin: Option<Tensor>,
    /// The same tables in f32 (`[len, rotary_dim / 2]`), for the CPU kernels.
    cos_f32: Vec<f32>,
    sin_f32: Vec<f32>,
    rotary_dim: usize,
}

impl RopeTables {
    pub fn rotary_dim(&self) -> usize {
        self.rotary_dim
    }

    /// `(cos, sin)`, f32, `[len, rotary_dim / 2]` row-major.
    pub fn f32_tables(&self) -> (&[f32], &[f32]) {
        (&self.cos_f32, &self.sin_f32)
    }

    /// Rotate the leading `rotary_dim` dimensions of `x` ([1, heads, len, head_dim]), in the
    /// half-split ("rotate_half") layout that Hugging Face checkpoints use.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (Some(cos), Some(sin)) = (&self.cos, &self.sin) else {
            return Ok(x.clone());
        };
        let head_dim = x.dim(3)?;
        if self.rotary_dim == head_dim {
            return candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin);
        }
        let rotated = x.narrow(3, 0, self.rotary_dim)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope(&rotated, cos, sin)?;
        let passed = x.narrow(3, self.rotary_dim, head_dim - self.rotary_dim)?;
        Tensor::cat(&[&rotated, &passed], 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' llama3 inverse frequencies for head_dim 16, theta 10000, factor 8,
    /// low 1, high 4, original length 256 (torch f32).
    #[test]
    fn llama3_frequencies_cover_all_three_regimes() {
        let rope = Rope::new(&RopeConfig {
            theta: 10000.0,
            rotary_dim: 16,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 256.0,
            },
        });
        let plain = Rope::new(&RopeConfig {
            theta: 10000.0,
            rotary_dim: 16,
            scaling: RopeScaling::None,
        });
        let (a, b) = (&rope.inv_freq, &plain.inv_freq);
        // High frequencies (wavelength < 64) are kept.
        for i in 0..3 {
            assert_eq!(a[i], b[i]);
        }
        // Wavelength 198.7 lies between 64 and 256: smoothed, strictly between b/8 and b.
        assert!(a[3] < b[3] && a[3] > b[3] / 8.0);
        // Long wavelengths are divided by the factor.
        for i in 4..8 {
            assert!((a[i] - b[i] / 8.0).abs() <= 1e-12 * b[i].abs().max(1.0));
        }
    }

    #[test]
    fn partial_rotation_leaves_the_tail() {
        let rope = Rope::new(&RopeConfig {
            theta: 10000.0,
            rotary_dim: 4,
            scaling: RopeScaling::None,
        });
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 6.0, &dev)
            .unwrap()
            .reshape((1, 2, 3, 6))
            .unwrap();
        let t = rope.tables(5, 3, DType::F32, &dev).unwrap();
        let y = t.apply(&x).unwrap();
        let tail_x = x.narrow(3, 4, 2).unwrap().flatten_all().unwrap();
        let tail_y = y.narrow(3, 4, 2).unwrap().flatten_all().unwrap();
        assert_eq!(
            tail_x.to_vec1::<f32>().unwrap(),
            tail_y.to_vec1::<f32>().unwrap()
        );
        // Rotation keeps the norm of each rotated pair.
        let n = |t: &Tensor| {
            t.narrow(3, 0, 4)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!((n(&x) - n(&y)).abs() < 1e-2);
        let head = |t: &Tensor| {
            t.narrow(3, 0, 4)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_ne!(head(&x), head(&y));
    }
}
