//! SEANet, the convolutional encoder and decoder of EnCodec and Mimi, in the module layout of
//! transformers (`EncodecEncoder`/`EncodecDecoder`, `MimiEncoder`/`MimiDecoder`):
//!
//! - encoder: conv(kernel_size) from the waveform; per ratio (reversed): residual blocks, ELU,
//!   a strided conv (kernel 2r, stride r) doubling the channels; optionally an LSTM; ELU and a
//!   conv(last_kernel_size) to the latent dimension.
//! - decoder: the mirror image, with transposed convs halving the channels.
//!
//! Both families share every knob here (causal or centred padding, pad mode, weight norm or
//! group norm, LSTM depth, residual kernel, dilation growth, compression, conv or identity
//! shortcut, trim ratio); the family configs only translate their keys into [`SeanetConfig`].
//!
//! A causal SEANet also runs chunk by chunk with [`Seanet::step`], giving the same output as
//! [`Seanet::forward`] on the whole signal whatever the chunk sizes.

mod conv;
mod lstm;
mod lstm_cpu;
mod ops;
mod pad;
mod resblock;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use tessera_core::Error;
use tessera_core::config::check_range;

pub use conv::ConvNorm;
pub use pad::PadMode;

pub(crate) use conv::{ConvPadding, ConvShape, ConvState, ConvTrState, SConv1d, SConvTranspose1d};
pub(crate) use ops::elu;

use lstm::{Lstm, LstmState};
use resblock::{ResBlock, ResSpec, ResState};

/// Most channels a SEANet stage may have; configs are checked against it before allocating.
pub(crate) const MAX_CHANNELS: usize = 1 << 14;

/// The geometry checks that EnCodec's and Mimi's configs share (both carry the SEANet fields
/// under the same names). Returns the channel count of the innermost stage.
pub(crate) fn check_geometry(
    upsampling_ratios: &[usize],
    num_filters: usize,
    compress: usize,
    dilation_growth_rate: usize,
    num_residual_layers: usize,
) -> tessera_core::Result<usize> {
    if upsampling_ratios.is_empty() || upsampling_ratios.len() > 8 {
        return Err(Error::config(format!(
            "upsampling_ratios has {} entries (expected 1..=8)",
            upsampling_ratios.len()
        )));
    }
    for (i, &r) in upsampling_ratios.iter().enumerate() {
        check_range(&format!("upsampling_ratios[{i}]"), r, 1, 64)?;
    }
    check_range(
        "hop length (product of upsampling_ratios)",
        upsampling_ratios.iter().product::<usize>(),
        1,
        1 << 16,
    )?;
    let inner = num_filters
        .checked_shl(upsampling_ratios.len() as u32)
        .filter(|&c| c <= MAX_CHANNELS)
        .ok_or_else(|| {
            Error::config(format!(
                "num_filters {num_filters} doubled over {} stages exceeds {MAX_CHANNELS} channels",
                upsampling_ratios.len()
            ))
        })?;
    if num_filters / compress == 0 {
        return Err(Error::config(format!(
            "compress = {compress} leaves residual blocks of {num_filters} filters with no channels"
        )));
    }
    let max_dilation = (dilation_growth_rate as u64)
        .checked_pow(num_residual_layers.saturating_sub(1) as u32)
        .unwrap_or(u64::MAX);
    check_range("largest residual dilation", max_dilation, 1, 1 << 16)?;
    Ok(inner)
}

/// Everything that shapes a SEANet encoder/decoder pair.
#[derive(Debug, Clone, PartialEq)]
pub struct SeanetConfig {
    /// Audio channels.
    pub channels: usize,
    /// Latent channels (the encoder's output, the decoder's input).
    pub dimension: usize,
    /// Channels of the first conv; doubled at each downsampling.
    pub n_filters: usize,
    pub n_residual_layers: usize,
    /// Upsampling ratios in decoder order (the encoder uses them reversed).
    pub ratios: Vec<usize>,
    pub kernel_size: usize,
    pub last_kernel_size: usize,
    pub residual_kernel_size: usize,
    /// Dilation of the j-th residual block of a stage: `dilation_base^j`.
    pub dilation_base: usize,
    pub causal: bool,
    pub pad_mode: PadMode,
    /// Channel reduction inside residual blocks.
    pub compress: usize,
    /// LSTM layers after the encoder's last stage and before the decoder's first (0: none).
    pub lstm_layers: usize,
    /// Share of a causal transposed conv's overhang trimmed on the right (the rest on the left).
    pub trim_right_ratio: f64,
    /// Residual blocks add a kernel-1 conv of their input (else the input itself).
    pub conv_shortcut: bool,
    pub norm: ConvNorm,
}

impl SeanetConfig {
    /// Samples per latent frame.
    pub fn hop_length(&self) -> usize {
        self.ratios.iter().product()
    }

    /// Channels after the encoder's last downsampling (the LSTM's width).
    pub fn inner_channels(&self) -> usize {
        self.n_filters << self.ratios.len()
    }

    fn padding(&self) -> ConvPadding {
        ConvPadding {
            causal: self.causal,
            mode: self.pad_mode,
            norm: self.norm,
        }
    }

    fn res_spec(&self, dim: usize, j: usize) -> ResSpec {
        ResSpec {
            dim,
            hidden: dim / self.compress,
            kernel: self.residual_kernel_size,
            dilation: self.dilation_base.pow(j as u32),
            conv_shortcut: self.conv_shortcut,
        }
    }
}

#[derive(Debug, Clone)]
enum Layer {
    Conv(SConv1d),
    ConvTr(SConvTranspose1d),
    Res(ResBlock),
    Elu,
    Lstm(Lstm),
}

#[derive(Debug, Clone)]
enum LayerState {
    Conv(ConvState),
    ConvTr(ConvTrState),
    Res(ResState),
    Lstm(LstmState),
    Stateless,
}

/// A SEANet encoder or decoder: the layers of the reference's `nn.ModuleList`, in order.
#[derive(Debug, Clone)]
pub struct Seanet {
    layers: Vec<Layer>,
}

/// The state of a streamed [`Seanet`]; made by [`Seanet::new_state`].
#[derive(Debug, Clone)]
pub struct SeanetState {
    layers: Vec<LayerState>,
}

/// Input and output channels from which a stride-1 conv outside the residual blocks runs by
/// minimal filtering.
const WIDE_MIN_IN_CHANNELS: usize = 128;
const WIDE_MIN_OUT_CHANNELS: usize = 512;
/// Output channels from which a stride-1 conv outside the residual blocks runs on AMX tiles.
const MIN_TILE_OUT_CHANNELS: usize = 32;

/// Appends layers while counting the reference's module indices (ELUs have one too).
struct Builder<'a> {
    vb: VarBuilder<'a>,
    layers: Vec<Layer>,
}

impl Builder<'_> {
    fn next(&self) -> VarBuilder<'_> {
        self.vb.pp(self.layers.len())
    }

    fn conv(&mut self, shape: ConvShape, cfg: &SeanetConfig) -> candle_core::Result<()> {
        let conv = SConv1d::load(self.next(), shape, cfg.padding())?;
        // Without AMX, the wide stride-1 convs (a decoder's first, an encoder's last) by minimal
        // filtering: there the direct conv is bound by the FMA units. Measured alone (2 threads, 10 s of
        // frames): Mimi's 512 -> 1024 7-tap 9.0 -> 6.1 ms, its 1024 -> 512 3-tap 4.1 -> 3.2,
        // EnCodec's 128 -> 512 7-tap 3.4 -> 3.1; EnCodec's 512 -> 128 was slower (4.0 -> 4.2).
        let wide = shape.stride == 1
            && shape.c_in >= WIDE_MIN_IN_CHANNELS
            && shape.c_out >= WIDE_MIN_OUT_CHANNELS;
        // On AMX tiles where the CPU has them (strided convs take them in `SConv1d::load`),
        // except the narrow last conv of a decoder, whose products would fill a tile's columns
        // for one channel.
        let conv = if shape.stride == 1 && shape.c_out >= MIN_TILE_OUT_CHANNELS {
            conv.with_tiles()
        } else {
            conv
        };
        let conv = if wide && !conv.runs_on_tiles() {
            conv.with_winograd()
        } else {
            conv
        };
        self.layers.push(Layer::Conv(conv));
        Ok(())
    }

    fn res(&mut self, spec: ResSpec, cfg: &SeanetConfig) -> candle_core::Result<()> {
        let block = ResBlock::load(self.next(), &spec, cfg.padding())?;
        self.layers.push(Layer::Res(block));
        Ok(())
    }

    fn lstm(&mut self, dim: usize, layers: usize) -> candle_core::Result<()> {
        let lstm = Lstm::load(self.next(), dim, layers)?;
        self.layers.push(Layer::Lstm(lstm));
        Ok(())
    }

    fn elu(&mut self) {
        self.layers.push(Layer::Elu);
    }
}

impl Seanet {
    /// The encoder, from `{vb}.layers.{i}`.
    pub fn encoder(vb: VarBuilder, cfg: &SeanetConfig) -> candle_core::Result<Self> {
        let mut b = Builder {
            vb: vb.pp("layers"),
            layers: Vec::new(),
        };
        b.conv(
            ConvShape::new(cfg.channels, cfg.n_filters, cfg.kernel_size),
            cfg,
        )?;
        let mut dim = cfg.n_filters;
        for &ratio in cfg.ratios.iter().rev() {
            for j in 0..cfg.n_residual_layers {
                b.res(cfg.res_spec(dim, j), cfg)?;
            }
            b.elu();
            b.conv(ConvShape::new(dim, dim * 2, ratio * 2).stride(ratio), cfg)?;
            dim *= 2;
        }
        if cfg.lstm_layers > 0 {
            b.lstm(dim, cfg.lstm_layers)?;
        }
        b.elu();
        b.conv(
            ConvShape::new(dim, cfg.dimension, cfg.last_kernel_size),
            cfg,
        )?;
        Ok(Seanet { layers: b.layers })
    }

    /// The decoder, from `{vb}.layers.{i}`.
    pub fn decoder(vb: VarBuilder, cfg: &SeanetConfig) -> candle_core::Result<Self> {
        let mut b = Builder {
            vb: vb.pp("layers"),
            layers: Vec::new(),
        };
        let mut dim = cfg.inner_channels();
        b.conv(ConvShape::new(cfg.dimension, dim, cfg.kernel_size), cfg)?;
        if cfg.lstm_layers > 0 {
            b.lstm(dim, cfg.lstm_layers)?;
        }
        for &ratio in &cfg.ratios {
            b.elu();
            let up = SConvTranspose1d::load(
                b.next(),
                ConvShape::new(dim, dim / 2, ratio * 2).stride(ratio),
                cfg.padding(),
                cfg.trim_right_ratio,
            )?;
            b.layers.push(Layer::ConvTr(up));
            dim /= 2;
            for j in 0..cfg.n_residual_layers {
                b.res(cfg.res_spec(dim, j), cfg)?;
            }
        }
        b.elu();
        b.conv(
            ConvShape::new(cfg.n_filters, cfg.channels, cfg.last_kernel_size),
            cfg,
        )?;
        Ok(Seanet { layers: b.layers })
    }

    /// The whole signal `[B, C, T]` at once, exactly as the reference pads it.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        // An ELU is held back and applied by the conv after it, on that conv's input tiles:
        // one pass over the signal fewer, and no activated copy of it in memory.
        let mut pending_elu = false;
        for layer in &self.layers {
            let activated = std::mem::take(&mut pending_elu);
            let input = |x: &Tensor| if activated { elu(x) } else { Ok(x.clone()) };
            x = match layer {
                Layer::Elu => {
                    x = input(&x)?;
                    pending_elu = true;
                    continue;
                }
                Layer::Conv(conv) if activated => conv.forward_elu(&x)?,
                Layer::Conv(conv) => conv.forward(&x)?,
                Layer::ConvTr(conv) if activated => conv.forward_elu(&x)?,
                Layer::ConvTr(conv) => conv.forward(&x)?,
                Layer::Res(block) => block.forward(&input(&x)?)?,
                Layer::Lstm(lstm) => lstm.forward(&input(&x)?)?,
            };
        }
        if pending_elu {
            x = elu(&x)?;
        }
        Ok(x)
    }

    /// A fresh state for [`Self::step`].
    pub fn new_state(&self) -> SeanetState {
        SeanetState {
            layers: self
                .layers
                .iter()
                .map(|l| match l {
                    Layer::Conv(_) => LayerState::Conv(ConvState::default()),
                    Layer::ConvTr(_) => LayerState::ConvTr(ConvTrState::default()),
                    Layer::Res(_) => LayerState::Res(ResState::default()),
                    Layer::Lstm(_) => LayerState::Lstm(LstmState::default()),
                    Layer::Elu => LayerState::Stateless,
                })
                .collect(),
        }
    }

    /// The next chunk of a stream (causal models only). Returns what is final so far (nothing
    /// while a layer still waits for context); `last` flushes the stream's end as the
    /// whole-signal path pads it. The concatenated outputs equal [`Self::forward`]'s.
    pub fn step(
        &self,
        x: Option<&Tensor>,
        state: &mut SeanetState,
        last: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        if state.layers.len() != self.layers.len() {
            candle_core::bail!("streaming state made for another model");
        }
        let mut x = x.cloned();
        // As in `forward`, an ELU is held back and applied by the conv after it.
        let mut pending_elu = false;
        for (layer, st) in self.layers.iter().zip(state.layers.iter_mut()) {
            let activated = std::mem::take(&mut pending_elu);
            let input = |x: Option<Tensor>| match x {
                Some(x) if activated => elu(&x).map(Some),
                x => Ok(x),
            };
            x = match (layer, st) {
                (Layer::Conv(conv), LayerState::Conv(s)) => {
                    conv.step(x.as_ref(), s, last, activated)?
                }
                (Layer::ConvTr(conv), LayerState::ConvTr(s)) => {
                    conv.step(x.as_ref(), s, last, activated)?
                }
                (Layer::Res(block), LayerState::Res(s)) => {
                    block.step(input(x)?.as_ref(), s, last)?
                }
                (Layer::Lstm(lstm), LayerState::Lstm(s)) => lstm.step(input(x)?.as_ref(), s)?,
                (Layer::Elu, _) => {
                    pending_elu = true;
                    input(x)?
                }
                _ => candle_core::bail!("streaming state made for another model"),
            };
        }
        if pending_elu {
            x = x.map(|x| elu(&x)).transpose()?;
        }
        Ok(x)
    }
}
