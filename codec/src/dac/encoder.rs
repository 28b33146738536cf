//! DAC's encoder: a 7-tap conv from the waveform, one block per downsampling ratio (three
//! dilated residual units, snake, then a strided conv that doubles the channels), snake, and a
//! 3-tap conv to the latent.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig, Snake1d};

use super::blocks::ResidualUnit;
use super::config::DacConfig;
use super::context::strided;

#[derive(Debug, Clone)]
struct EncoderBlock {
    units: [ResidualUnit; 3],
    snake: Snake1d,
    down: Conv1d,
}

impl EncoderBlock {
    /// transformers' `DacEncoderBlock` with `stride_index = index + 1`.
    fn load(vb: VarBuilder, cfg: &DacConfig, index: usize) -> candle_core::Result<Self> {
        let stride = cfg.downsampling_ratios[index];
        let in_dim = cfg.encoder_hidden_size << index;
        let shape = strided(stride, false);
        let down = Conv1dConfig {
            padding: shape.padding,
            stride,
            ..Default::default()
        };
        Ok(EncoderBlock {
            units: ResidualUnit::load_three(&vb, in_dim, true)?,
            snake: Snake1d::load(vb.pp("snake1"), in_dim)?,
            // On AMX tiles where the CPU has them, else by minimal filtering over frames where
            // the width fits (`conv_polyphase_winograd`), else the plain gemm path.
            down: Conv1d::load(vb.pp("conv1"), in_dim, 2 * in_dim, shape.kernel, down, true)?
                .with_winograd(),
        })
    }

    /// `origin`: the absolute index of the block's first input sample.
    fn forward_at(&self, x: &Tensor, origin: usize) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for unit in &self.units {
            x = unit.forward_at(&x, origin)?;
        }
        // Its output frame j is frame origin / stride + j of the whole signal (windows start
        // on frame boundaries, so `origin` is a multiple of every stride).
        let at = origin / self.down.config().stride;
        self.down
            .forward_fused_at(&x, Some(&self.snake), None, None, at)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    conv1: Conv1d,
    blocks: Vec<EncoderBlock>,
    ratios: Vec<usize>,
    snake: Snake1d,
    conv2: Conv1d,
}

impl Encoder {
    pub fn load(vb: VarBuilder, cfg: &DacConfig) -> candle_core::Result<Self> {
        let same7 = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let conv1 = Conv1d::load(vb.pp("conv1"), 1, cfg.encoder_hidden_size, 7, same7, true)?;
        let blocks = (0..cfg.downsampling_ratios.len())
            .map(|i| EncoderBlock::load(vb.pp("block").pp(i), cfg, i))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let d = cfg.encoder_channels();
        let same3 = Conv1dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Encoder {
            conv1,
            blocks,
            ratios: cfg.downsampling_ratios.clone(),
            snake: Snake1d::load(vb.pp("snake1"), d)?,
            conv2: Conv1d::load(vb.pp("conv2"), d, cfg.hidden_size, 3, same3, true)?.with_tiles(),
        })
    }

    /// `[B, 1, T]` -> latent `[B, hidden_size, F]` (`F = T / hop` when T is a multiple of it),
    /// for audio that starts at frame `origin_frame` of the whole signal (see
    /// `Decoder::forward_at`).
    pub fn forward_at(&self, x: &Tensor, origin_frame: usize) -> candle_core::Result<Tensor> {
        let mut x = self.conv1.forward(x)?;
        let mut origin = origin_frame * self.ratios.iter().product::<usize>();
        for (block, &ratio) in self.blocks.iter().zip(&self.ratios) {
            x = block.forward_at(&x, origin)?;
            origin /= ratio;
        }
        self.conv2.forward_fused(&x, Some(&self.snake), None, None)
    }
}
