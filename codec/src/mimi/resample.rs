//! The learned resampling between Mimi's SEANet rate and its code rate (25 Hz <-> 12.5 Hz for
//! kyutai/mimi): a strided conv with replicate padding after the encoder transformer, and a
//! grouped (depthwise in kyutai/mimi) transposed conv before the decoder transformer. Both have
//! kernel `2 * latent_stride`, stride `latent_stride`, and no bias.

use candle_nn::VarBuilder;

use super::config::MimiConfig;
use crate::seanet::{ConvNorm, ConvPadding, ConvShape, PadMode, SConv1d, SConvTranspose1d};

fn shape(cfg: &MimiConfig) -> ConvShape {
    let stride = cfg.latent_stride();
    ConvShape::new(cfg.hidden_size, cfg.hidden_size, 2 * stride)
        .stride(stride)
        .bias(false)
}

/// `downsample` (`{vb}.conv.weight`).
pub(crate) fn downsample(vb: VarBuilder, cfg: &MimiConfig) -> candle_core::Result<SConv1d> {
    let padding = ConvPadding {
        causal: cfg.use_causal_conv,
        mode: PadMode::Replicate,
        norm: ConvNorm::None,
    };
    SConv1d::load(vb, shape(cfg), padding)
}

/// `upsample` (`{vb}.conv.weight`, `[hidden, hidden / upsample_groups, kernel]`).
pub(crate) fn upsample(vb: VarBuilder, cfg: &MimiConfig) -> candle_core::Result<SConvTranspose1d> {
    let padding = ConvPadding {
        causal: cfg.use_causal_conv,
        mode: PadMode::parse(&cfg.pad_mode).map_err(candle_core::Error::wrap)?,
        norm: ConvNorm::None,
    };
    SConvTranspose1d::load(
        vb,
        shape(cfg).groups(cfg.upsample_groups),
        padding,
        cfg.trim_right_ratio,
    )
}
