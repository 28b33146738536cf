//! DAC's residual unit in one pass over the signal on AMX tiles: `x + conv2(snake2(conv1(
//! snake1(x))))`, `conv1` a dilated conv with "same" zero padding, `conv2` pointwise.
//!
//! Conv by conv, `conv1`'s output goes to memory channel-major, and `conv2` reads it back, runs
//! Snake over it as it copies it, and transposes it again for the tiles: at 128 channels over
//! 80k samples (DAC 16 kHz) that pointwise conv took 13 ms for 1.3 GMAC, a third of the unit.
//! Here each time tile keeps `conv1`'s output time-major in cache, activates it as it lies, and
//! feeds it straight to `conv2` (`residual_unit_amx`), with the same bits as the two convs.

use candle_core::Tensor;

use super::conv::{Conv1d, CpuKernel, EdgeMode};
use super::conv_cpu::ConvGeom;
use super::conv_ops::with_data;
use super::residual_unit::tile_weights;
use super::residual_unit_amx::{self, TileUnit, UnitActivation};
use super::snake::Snake1d;
use super::snake_residual_unit_fma::{self, FmaUnit};

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
    /// The fused pass, or `None` when it does not apply (another device or dtype, convs off
    /// both the tiles and minimal filtering, shapes outside the unit's form); the caller then
    /// runs the layers.
    pub fn forward_cpu(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        self.forward_cpu_at(x, 0)
    }

    /// As [`Self::forward_cpu`] for a window whose first sample is sample `origin` of the whole
    /// signal: on the FMA kernels `conv1`'s minimal filtering anchors its tiles there, as
    /// [`Conv1d::forward_fused_at`] does, so windows reproduce the whole-signal pass.
    pub fn forward_cpu_at(&self, x: &Tensor, origin: usize) -> candle_core::Result<Option<Tensor>> {
        if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
            return Ok(None);
        }
        let (b, c, l) = x.dims3()?;
        if b * c == 0 || l == 0 || self.conv1.in_channels() != c {
            return Ok(None);
        }
        if let Some(unit) = self.tile_unit() {
            let x = x.contiguous()?;
            let out = with_data(&x, |xs| residual_unit_amx::run((xs, l), b, c, l, &unit))?;
            return Ok(Some(Tensor::from_vec(out, (b, c, l), x.device())?));
        }
        if let Some(unit) = self.fma_unit(b, c, l) {
            let x = x.contiguous()?;
            let out = with_data(&x, |xs| snake_residual_unit_fma::run(xs, &unit, origin))?;
            return Ok(Some(Tensor::from_vec(out, (b, c, l), x.device())?));
        }
        Ok(None)
    }

    /// The FMA pass's weights, when `conv1` runs by minimal filtering with "same" zero padding
    /// and `conv2` is pointwise `hidden -> c` with its plain weights.
    fn fma_unit(&self, batch: usize, c: usize, l: usize) -> Option<FmaUnit<'_>> {
        let (c1, c2) = (self.conv1.config(), self.conv2.config());
        let (k, hidden) = (self.conv1.kernel_size(), self.conv1.out_channels());
        let same = k % 2 == 1 && 2 * c1.padding == c1.dilation * (k - 1);
        let pointwise = self.conv2.kernel_size() == 1
            && c2.stride == 1
            && c2.groups == 1
            && c2.padding == 0
            && self.conv2.in_channels() == hidden
            && self.conv2.out_channels() == c;
        if !same || c1.stride != 1 || c1.groups != 1 || !pointwise {
            return None;
        }
        let cpu1 = self.conv1.cpu.as_ref()?;
        let CpuKernel::Winograd(ww) = &cpu1.kernel else {
            return None;
        };
        if ww.c_in != c || ww.c_out != hidden {
            return None;
        }
        let cpu2 = self.conv2.cpu.as_ref()?;
        let geom = ConvGeom {
            batch,
            c_in: c,
            l_in: l,
            c_out: hidden,
            kernel: k,
            padding: c1.padding,
            pad_right: c1.padding,
            edge: EdgeMode::Zeros,
            stride: 1,
            dilation: c1.dilation,
            groups: 1,
        };
        Some(FmaUnit {
            snake1: self.snake1.cpu_params()?,
            conv1: (ww, cpu1.bias.as_deref()),
            geom,
            snake2: self.snake2.cpu_params()?,
            conv2: (cpu2.packed_pointwise(c, hidden)?, cpu2.bias.as_deref()),
        })
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

    /// How a test conv picks its kernels (`Conv1d::with_tiles`, `with_winograd`, or none).
    type WithKernels = fn(Conv1d) -> Conv1d;

    /// For each dilation of DAC's units (1, 3, 9): the unit's CPU pass and its two convs run
    /// one after the other, over 2 x `c` x `l` random samples, the convs' kernels chosen by
    /// `with_kernels` (conv1, then conv2).
    fn unit_and_layers(
        (c, l): (usize, usize),
        biases: bool,
        with_kernels: (WithKernels, WithKernels),
    ) -> Vec<(usize, Tensor, Tensor)> {
        let dev = Device::Cpu;
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.1, shape, &dev).unwrap();
        let b = |n: usize| biases.then(|| Tensor::randn(0f32, 0.1, n, &dev).unwrap());
        let snake = || Snake1d::new(Tensor::rand(0.2f32, 2.0, (1, c, 1), &dev).unwrap()).unwrap();
        let (s1, s2) = (snake(), snake());
        let conv2 = Conv1d::new(w((c, c, 1)), b(c), Conv1dConfig::default()).unwrap();
        let conv2 = with_kernels.1(conv2);
        [1, 3, 9]
            .into_iter()
            .map(|dilation| {
                let cfg = Conv1dConfig {
                    padding: 3 * dilation,
                    dilation,
                    ..Default::default()
                };
                let conv1 = with_kernels.0(Conv1d::new(w((c, c, 7)), b(c), cfg).unwrap());
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
                (dilation, got, want)
            })
            .collect()
    }

    /// The fused unit gives the bits of its two convs run one after the other, for each
    /// dilation of DAC's units and over several time tiles.
    #[test]
    fn fused_unit_gives_the_convs_bits() {
        if !crate::nn::amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        let bits = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (c, l) in [(64, 9001), (128, 300), (64, 5)] {
            let tiles = (
                Conv1d::with_tiles as fn(_) -> _,
                Conv1d::with_tiles as fn(_) -> _,
            );
            for (dilation, got, want) in unit_and_layers((c, l), true, tiles) {
                assert!(
                    bits(got) == bits(want),
                    "c {c}, {l} samples, dilation {dilation}"
                );
            }
        }
    }

    /// Without AMX tiles, a unit whose `conv1` runs by minimal filtering takes the FMA pass:
    /// within f32 rounding of its two convs one after the other (the products sum in another
    /// order than the general gemm), for each dilation of DAC's units, with and without
    /// biases, over one to many jobs.
    #[test]
    fn fma_unit_equals_its_layers() {
        for (c, l, biases) in [(64, 9001, true), (96, 300, false), (32, 5, true)] {
            let kernels = (
                Conv1d::with_winograd as fn(_) -> _,
                (|conv| conv) as fn(_) -> _,
            );
            for (dilation, got, want) in unit_and_layers((c, l), biases, kernels) {
                let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
                let scale = want.abs().unwrap().max_all().unwrap();
                let rel = diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap();
                assert!(rel < 1e-5, "c {c}, {l} samples, dilation {dilation}: {rel}");
            }
        }
    }

    /// A window of the signal, given its offset, reproduces the whole-signal pass bit for bit
    /// away from its edges (the FMA pass anchors `conv1`'s tiles on the absolute grid), and
    /// another anchor does not.
    #[test]
    fn fma_unit_windows_reproduce_the_whole_signal() {
        let dev = Device::Cpu;
        let c = 16;
        let l = 3000;
        let dilation = 3;
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.1, shape, &dev).unwrap();
        let snake = || Snake1d::new(Tensor::rand(0.2f32, 2.0, (1, c, 1), &dev).unwrap()).unwrap();
        let (s1, s2) = (snake(), snake());
        let cfg = Conv1dConfig {
            padding: 3 * dilation,
            dilation,
            ..Default::default()
        };
        let conv1 = Conv1d::new(w((c, c, 7)), None, cfg)
            .unwrap()
            .with_winograd();
        let conv2 = Conv1d::new(w((c, c, 1)), None, Conv1dConfig::default()).unwrap();
        let unit = SnakeResidualUnit {
            snake1: &s1,
            conv1: &conv1,
            snake2: &s2,
            conv2: &conv2,
        };
        let x = Tensor::randn(0f32, 1., (1, c, l), &dev).unwrap();
        let rows = |t: Tensor| t.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        let whole = rows(unit.forward_cpu(&x).unwrap().unwrap());
        let margin = 3 * dilation + crate::nn::winograd_reach_extension(dilation);
        for (s0, s1) in [(100, 2000), (1037, 2999), (0, 1500)] {
            let xw = x.narrow(2, s0, s1 - s0).unwrap();
            let win = rows(unit.forward_cpu_at(&xw, s0).unwrap().unwrap());
            let shifted = rows(unit.forward_cpu_at(&xw, s0 + 1).unwrap().unwrap());
            let lo = if s0 == 0 { 0 } else { margin };
            let hi = s1 - s0 - margin;
            let mut differs = false;
            for ch in 0..c {
                for j in lo..hi {
                    let want = whole[ch][s0 + j].to_bits();
                    assert_eq!(
                        win[ch][j].to_bits(),
                        want,
                        "window {s0}..{s1} ch {ch} at {j}"
                    );
                    differs |= shifted[ch][j].to_bits() != want;
                }
            }
            assert!(differs, "window {s0}..{s1}: the anchor should matter");
        }
    }
}
