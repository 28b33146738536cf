//! SNAC's decoder: from the latent to the waveform through upsampling blocks (snake, transposed
//! conv, optional noise injection, three dilated residual units), then snake, a 7-tap conv to one
//! channel and tanh.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, Snake1d};

use super::attention::LocalAttention;
use super::blocks::ResidualUnit;
use super::config::SnacConfig;
use super::noise::NoiseSource;

/// `x + noise * conv1x1(x)` with one N(0, 1) sample per batch row and time step, shared by all
/// channels (`torch.randn((B, 1, T))` in the reference).
#[derive(Debug, Clone)]
struct NoiseBlock {
    linear: Conv1d,
}

impl NoiseBlock {
    fn forward(
        &self,
        x: &Tensor,
        block: usize,
        rng: Option<&mut dyn NoiseSource>,
    ) -> candle_core::Result<Tensor> {
        let Some(rng) = rng else {
            // Zero noise: x + 0 * h == x exactly, so skip the projection.
            return Ok(x.clone());
        };
        let (b, _, t) = x.dims3()?;
        let noise = rng.draw(block, b, t, x.device())?.to_dtype(x.dtype())?;
        // x + noise * (W x), computed as x + W (noise * x) so that the sum forms in place; the
        // noise scales whole time steps, so both orders are the same product.
        self.linear.forward_scaled_add(x, &noise, x)
    }
}

#[derive(Debug, Clone)]
struct DecoderBlock {
    snake: Snake1d,
    up: ConvTranspose1d,
    noise: Option<NoiseBlock>,
    units: [ResidualUnit; 3],
}

impl DecoderBlock {
    fn load(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        stride: usize,
        noise: bool,
        groups: usize,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp("block");
        let up = ConvTranspose1dConfig {
            padding: stride.div_ceil(2),
            output_padding: stride % 2,
            stride,
            ..Default::default()
        };
        let up = ConvTranspose1d::load(vb.pp("1"), in_dim, out_dim, 2 * stride, up, true)?;
        let noise = if noise {
            let linear = Conv1d::load(
                vb.pp("2").pp("linear"),
                out_dim,
                out_dim,
                1,
                Conv1dConfig::default(),
                false,
            )?;
            Some(NoiseBlock { linear })
        } else {
            None
        };
        let first_unit = if noise.is_some() { 3 } else { 2 };
        let unit = |i: usize, dilation: usize| {
            ResidualUnit::load(vb.pp(first_unit + i), out_dim, dilation, groups)
        };
        Ok(DecoderBlock {
            snake: Snake1d::load(vb.pp("0"), in_dim)?,
            up,
            noise,
            units: [unit(0, 1)?, unit(1, 3)?, unit(2, 9)?],
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        block: usize,
        rng: Option<&mut dyn NoiseSource>,
    ) -> candle_core::Result<Tensor> {
        let mut x = self.up.forward_fused(x, Some(&self.snake))?;
        if let Some(noise) = &self.noise {
            x = noise.forward(&x, block, rng)?;
        }
        for unit in &self.units {
            x = unit.forward(&x)?;
        }
        Ok(x)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    /// The input convs: one dense 7-tap conv, or a depthwise 7-tap conv then a 1x1 conv.
    input: Vec<Conv1d>,
    attention: Option<LocalAttention>,
    blocks: Vec<DecoderBlock>,
    snake: Snake1d,
    output: Conv1d,
}

impl Decoder {
    /// Loads `decoder.model.{i}` in the order of the reference's `nn.Sequential`.
    pub fn load(vb: VarBuilder, cfg: &SnacConfig) -> candle_core::Result<Self> {
        let vb = vb.pp("model");
        let latent = cfg.latent_channels();
        let channels = cfg.decoder_dim;
        let same7 = Conv1dConfig {
            padding: 3,
            ..Default::default()
        };
        let input = if cfg.depthwise {
            vec![
                Conv1d::load(
                    vb.pp("0"),
                    latent,
                    latent,
                    7,
                    Conv1dConfig {
                        groups: latent,
                        ..same7
                    },
                    true,
                )?,
                Conv1d::load(
                    vb.pp("1"),
                    latent,
                    channels,
                    1,
                    Conv1dConfig::default(),
                    true,
                )?,
            ]
        } else {
            vec![Conv1d::load(vb.pp("0"), latent, channels, 7, same7, true)?]
        };
        let mut idx = input.len();
        let attention = match cfg.attn_window_size {
            Some(window) => {
                idx += 1;
                Some(LocalAttention::load(vb.pp(idx - 1), channels, window)?)
            }
            None => None,
        };
        let mut blocks = Vec::with_capacity(cfg.decoder_rates.len());
        let mut out_dim = channels;
        for (i, &stride) in cfg.decoder_rates.iter().enumerate() {
            let in_dim = channels >> i;
            out_dim = channels >> (i + 1);
            let groups = if cfg.depthwise { out_dim } else { 1 };
            blocks.push(DecoderBlock::load(
                vb.pp(idx),
                in_dim,
                out_dim,
                stride,
                cfg.noise,
                groups,
            )?);
            idx += 1;
        }
        let snake = Snake1d::load(vb.pp(idx), out_dim)?;
        let output = Conv1d::load(vb.pp(idx + 1), out_dim, 1, 7, same7, true)?;
        Ok(Decoder {
            input,
            attention,
            blocks,
            snake,
            output,
        })
    }

    /// Latent `[B, C, T]` -> audio `[B, 1, T * hop]` in [-1, 1]. `rng: None` means zero noise.
    pub fn forward(
        &self,
        z: &Tensor,
        mut rng: Option<&mut dyn NoiseSource>,
    ) -> candle_core::Result<Tensor> {
        let mut x = z.clone();
        for conv in &self.input {
            x = conv.forward(&x)?;
        }
        if let Some(attn) = &self.attention {
            x = attn.forward(&x)?;
        }
        for (i, block) in self.blocks.iter().enumerate() {
            // Reborrowed per block: the trait object's lifetime shortens to the call.
            let rng = rng.as_mut().map(|r| &mut **r as &mut dyn NoiseSource);
            x = block.forward(&x, i, rng)?;
        }
        let x = self
            .output
            .forward_fused(&x, Some(&self.snake), None, None)?;
        x.tanh()
    }
}
