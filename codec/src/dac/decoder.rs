//! DAC's decoder: a 7-tap conv from the latent, one block per upsampling ratio (snake, a
//! transposed conv that halves the channels, three dilated residual units), then snake, a 7-tap
//! conv to one channel and tanh.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, Snake1d};

use super::blocks::ResidualUnit;
use super::config::DacConfig;
use super::context::strided;

#[derive(Debug, Clone)]
struct DecoderBlock {
    snake: Snake1d,
    up: ConvTranspose1d,
    units: [ResidualUnit; 3],
}

impl DecoderBlock {
    /// transformers' `DacDecoderBlock` with `stride_index = index`.
    fn load(vb: VarBuilder, cfg: &DacConfig, index: usize) -> candle_core::Result<Self> {
        let stride = cfg.upsampling_ratios[index];
        let in_dim = cfg.decoder_hidden_size >> index;
        let out_dim = cfg.decoder_channels(index);
        let shape = strided(stride, true);
        // No output padding: an odd stride gives `L * s - 1` samples, as in the reference.
        let up = ConvTranspose1dConfig {
            padding: shape.padding,
            stride,
            ..Default::default()
        };
        Ok(DecoderBlock {
            snake: Snake1d::load(vb.pp("snake1"), in_dim)?,
            // On AMX tiles where the CPU has them, else by minimal filtering over frames where
            // the width fits (`conv_polyphase_winograd`), else the direct or gemm path.
            up: ConvTranspose1d::load(vb.pp("conv_t1"), in_dim, out_dim, shape.kernel, up, true)?
                .with_winograd(),
            units: ResidualUnit::load_three(&vb, out_dim, true)?,
        })
    }

    /// `origin`: the absolute index of the block's first output sample.
    fn forward_at(&self, x: &Tensor, origin: usize) -> candle_core::Result<Tensor> {
        // Its input frame i is frame origin / stride + i of the whole signal.
        let at = origin / self.up.config().stride;
        let mut x = self.up.forward_fused_at(x, Some(&self.snake), at)?;
        for unit in &self.units {
            x = unit.forward_at(&x, origin)?;
        }
        Ok(x)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    conv1: Conv1d,
    blocks: Vec<DecoderBlock>,
    ratios: Vec<usize>,
    snake: Snake1d,
    conv2: Conv1d,
}

impl Decoder {
    pub fn load(vb: VarBuilder, cfg: &DacConfig) -> candle_core::Result<Self> {
        let same7 = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let conv1 = Conv1d::load(
            vb.pp("conv1"),
            cfg.hidden_size,
            cfg.decoder_hidden_size,
            7,
            same7,
            true,
        )?
        .with_tiles();
        // Without AMX, by minimal filtering.
        let conv1 = if conv1.runs_on_tiles() {
            conv1
        } else {
            conv1.with_winograd()
        };
        let blocks = (0..cfg.upsampling_ratios.len())
            .map(|i| DecoderBlock::load(vb.pp("block").pp(i), cfg, i))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let out_dim = cfg.decoder_channels(cfg.upsampling_ratios.len() - 1);
        Ok(Decoder {
            conv1,
            blocks,
            ratios: cfg.upsampling_ratios.clone(),
            snake: Snake1d::load(vb.pp("snake1"), out_dim)?,
            conv2: Conv1d::load(vb.pp("conv2"), out_dim, 1, 7, same7, true)?,
        })
    }

    /// Latent `[B, hidden_size, F]` -> audio `[B, 1, decoded_len(F)]` in [-1, 1], for frames
    /// that start at frame `origin_frame` of the whole signal (0 for a whole signal; a window's
    /// offset when decoding window by window, so that the minimal-filtering convs tile it as
    /// they tile the whole signal).
    pub fn forward_at(&self, z: &Tensor, origin_frame: usize) -> candle_core::Result<Tensor> {
        let mut x = self
            .conv1
            .forward_fused_at(z, None, None, None, origin_frame)?;
        let mut origin = origin_frame;
        for (block, &ratio) in self.blocks.iter().zip(&self.ratios) {
            origin *= ratio;
            x = block.forward_at(&x, origin)?;
        }
        self.conv2
            .forward_fused(&x, Some(&self.snake), None, None)?
            .tanh()
    }
}
