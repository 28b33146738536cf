//! SNAC's encoder: a 7-tap conv from the waveform, one block per encoder rate (three dilated
//! residual units, then a strided conv that doubles the channels), optional local attention, and
//! a final 7-tap conv (depthwise in the depthwise models).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig, Snake1d};

use super::attention::LocalAttention;
use super::blocks::ResidualUnit;
use super::config::SnacConfig;

#[derive(Debug, Clone)]
struct EncoderBlock {
    units: [ResidualUnit; 3],
    snake: Snake1d,
    down: Conv1d,
}

impl EncoderBlock {
    fn load(
        vb: VarBuilder,
        out_dim: usize,
        stride: usize,
        depthwise: bool,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp("block");
        let in_dim = out_dim / 2;
        let groups = if depthwise { in_dim } else { 1 };
        let unit =
            |i: usize, dilation: usize| ResidualUnit::load(vb.pp(i), in_dim, dilation, groups);
        let down = Conv1dConfig {
            padding: stride.div_ceil(2),
            stride,
            ..Default::default()
        };
        Ok(EncoderBlock {
            units: [unit(0, 1)?, unit(1, 3)?, unit(2, 9)?],
            snake: Snake1d::load(vb.pp("3"), in_dim)?,
            down: Conv1d::load(vb.pp("4"), in_dim, out_dim, 2 * stride, down, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for unit in &self.units {
            x = unit.forward(&x)?;
        }
        self.down.forward_fused(&x, Some(&self.snake), None, None)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    first: Conv1d,
    blocks: Vec<EncoderBlock>,
    attention: Option<LocalAttention>,
    last: Conv1d,
}

impl Encoder {
    /// Loads `encoder.block.{i}` in the order of the reference's `nn.Sequential`.
    pub fn load(vb: VarBuilder, cfg: &SnacConfig) -> candle_core::Result<Self> {
        let vb = vb.pp("block");
        let same7 = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let mut d = cfg.encoder_dim;
        let first = Conv1d::load(vb.pp("0"), 1, d, 7, same7, true)?;
        let mut idx = 1;
        let mut blocks = Vec::with_capacity(cfg.encoder_rates.len());
        for &stride in &cfg.encoder_rates {
            d *= 2;
            blocks.push(EncoderBlock::load(vb.pp(idx), d, stride, cfg.depthwise)?);
            idx += 1;
        }
        let attention = match cfg.attn_window_size {
            Some(window) => {
                idx += 1;
                Some(LocalAttention::load(vb.pp(idx - 1), d, window)?)
            }
            None => None,
        };
        let groups = if cfg.depthwise { d } else { 1 };
        let last = Conv1d::load(vb.pp(idx), d, d, 7, Conv1dConfig { groups, ..same7 }, true)?;
        Ok(Encoder {
            first,
            blocks,
            attention,
            last,
        })
    }

    /// `[B, 1, T]` (T a multiple of the padding multiple) -> latent `[B, C, T / hop]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.first.forward(x)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        if let Some(attn) = &self.attention {
            x = attn.forward(&x)?;
        }
        self.last.forward(&x)
    }
}
