//! DAC's residual unit in one pass over the signal on AMX tiles: `x + conv2(snake2(conv1(
//! snake1(x))))`, `conv1` a dilated conv with "same" zero padding, `conv2` pointwise.
//!
//! Conv by conv, `conv1`'s output goes to memory channel-major, and `conv2` reads it back, runs
//! Snake over it as it copies it, and transposes it again for the tiles: at 128 channels over
//! 80k samples (DAC 16 kHz) that pointwise conv took 13 ms for 1.3 GMAC, a third of the unit.
//! Here each time tile keeps `conv1`'s output time-major in cache, activates it as it lies, and
//! feeds it straight to `conv2` (`residual_unit_amx`), with the same bits as the two convs.

use candle_core::Tensor;

use super::conv::{Conv1d, EdgeMode};
use super::conv_ops::with_data;
use super::residual_unit::tile_weights;
use super::residual_unit_amx::{self, TileUnit, UnitActivation};
use super::snake::Snake1d;

/// The unit's layers; the convs hold their own padding (`conv2` none).
#[derive(Clone, Copy, Debug)]
pub struct SnakeResidualUnit<'a> {
    pub snake1: &'a Snake1d,
    /// `dim -> hidden`, odd kernel, dilation `d`, padding `d (k - 1) / 2`, stride 1.
    pub conv1: &'a Conv1d,
    pub snake2: &'a Snake1d,
    /// `hidden -> dim`, kernel 1.
    pub conv2: &'a Conv1d,
}

impl SnakeResidualUnit<'_> {
    /// The fused pass, or `None` when it does not apply (no AMX, another device or dtype,
    /// convs off the tiles, shapes outside the unit's form); the caller then runs the layers.
    pub fn forward_cpu(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
            return Ok(None);
        }
        let (b, c, l) = x.dims3()?;
        let Some(unit) = self.tile_unit() else {
            return Ok(None);
        };
        if b * c == 0 || l == 0 || self.conv1.in_channels() != c {
            return Ok(None);
        }
        let x = x.contiguous()?;
        let out = with_data(&x, |xs| residual_unit_amx::run((xs, l), b, c, l, &unit))?;
        Ok(Some(Tensor::from_vec(out, (b, c, l), x.device())?))
    }

    fn tile_unit(&self) -> Option<TileUnit<'_>> {
        let (c1, c2) = (self.conv1.config(), self.conv2.config());
        let k = self.conv1.kernel_size();
        // "Same" padding, the only kind the unit's residual lines up with.
        let same = k % 2 == 1 && 2 * c1.padding == c1.dilation * (k - 1);
        if !same || c1.stride != 1 || c1.groups != 1 || c2.padding != 0 {
            return None;
        }
        let unit = TileUnit {
            conv1: tile_weights(self.conv1)?,
            conv2: tile_weights(self.conv2)?,
            shortcut: None,
            pad: (c1.padding, c1.padding),
            mode: EdgeMode::Zeros,
            activation: UnitActivation::Snake(self.snake1.cpu_params()?, self.snake2.cpu_params()?),
        };
        unit.fits().then_some(unit)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::nn::Conv1dConfig;

    /// The fused unit gives the bits of its two convs run one after the other, for each
    /// dilation of DAC's units and over several time tiles.
    #[test]
    fn fused_unit_gives_the_convs_bits() {
        if !crate::nn::amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        let dev = Device::Cpu;
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.1, shape, &dev).unwrap();
        let b = |n: usize| Some(Tensor::randn(0f32, 0.1, n, &dev).unwrap());
        let bits = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let snake = |c: usize| {
            let alpha = (Tensor::rand(0.2f32, 2.0, (1, c, 1), &dev)).unwrap();
            Snake1d::new(alpha).unwrap()
        };
        for (c, l) in [(64, 9001), (128, 300), (64, 5)] {
            let (s1, s2) = (snake(c), snake(c));
            let conv2 = Conv1d::new(w((c, c, 1)), b(c), Conv1dConfig::default())
                .unwrap()
                .with_tiles();
            for dilation in [1, 3, 9] {
                let cfg = Conv1dConfig {
                    padding: 3 * dilation,
                    dilation,
                    ..Default::default()
                };
                let conv1 = Conv1d::new(w((c, c, 7)), b(c), cfg).unwrap().with_tiles();
                let unit = SnakeResidualUnit {
                    snake1: &s1,
                    conv1: &conv1,
                    snake2: &s2,
                    conv2: &conv2,
                };
                let x = Tensor::randn(0f32, 1., (2, c, l), &dev).unwrap();
                let got = unit.forward_cpu(&x).unwrap().expect("the unit fits");
                let y = conv1.forward_fused(&x, Some(&s1), None, None).unwrap();
                let want = conv2.forward_fused(&y, Some(&s2), None, Some(&x)).unwrap();
                assert!(
                    bits(got) == bits(want),
                    "c {c}, {l} samples, dilation {dilation}"
                );
            }
        }
    }
}
