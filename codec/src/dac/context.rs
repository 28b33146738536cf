//! How far DAC looks around a frame: the receptive fields of its encoder and decoder, in frames.
//!
//! DAC is not causal: every code depends on audio on both sides of its frame, and every decoded
//! sample on codes on both sides. The reach is finite, and computed here exactly from the conv
//! geometry (index arithmetic, no estimate), so that chunked processing can take just enough
//! context to give the same numbers as whole-file processing.

use tessera_core::nn::{
    strided_winograd_reach_frames, transposed_winograd_reach_frames, winograd_reach_extension,
};

use super::blocks::{UNIT_DILATIONS, UNIT_KERNEL};
use super::config::DacConfig;

/// Frames of context on each side that a frame's result depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Earlier frames (of audio for the encoder, of codes for the decoder).
    pub left_frames: usize,
    /// Later frames.
    pub right_frames: usize,
}

/// Kernel, stride, dilation and padding of one conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvShape {
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub padding: usize,
    /// A transposed conv (upsampling by `stride`).
    pub transposed: bool,
    /// Inputs beyond the kernel's reach, on each side, that an output's value depends on (the
    /// rest of its tile, for a conv by minimal filtering): samples of a plain or strided conv,
    /// frames of a transposed conv.
    pub tile_reach: usize,
}

impl ConvShape {
    pub(crate) fn plain(kernel: usize, dilation: usize, padding: usize) -> Self {
        ConvShape {
            kernel,
            stride: 1,
            dilation,
            padding,
            transposed: false,
            tile_reach: 0,
        }
    }

    /// The same conv run by minimal filtering (`Conv1d::with_winograd`).
    fn by_tiles(self) -> Self {
        ConvShape {
            tile_reach: winograd_reach_extension(self.dilation),
            ..self
        }
    }

    /// The input index range that outputs `lo..=hi` read.
    pub(crate) fn inputs_of(&self, lo: i64, hi: i64) -> (i64, i64) {
        let (k, s, d, p) = (
            self.kernel as i64,
            self.stride as i64,
            self.dilation as i64,
            self.padding as i64,
        );
        let reach = d * (k - 1);
        let t = self.tile_reach as i64;
        if self.transposed {
            // Input i writes outputs i*s - p ..= i*s - p + reach.
            (ceil_div(lo + p - reach, s) - t, (hi + p).div_euclid(s) + t)
        } else {
            // Output j reads inputs j*s - p ..= j*s - p + reach.
            (lo * s - p - t, hi * s - p + reach + t)
        }
    }
}

pub(crate) fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// The strided conv of a block with ratio `s`: kernel `2s`, padding `ceil(s / 2)`.
pub(crate) fn strided(stride: usize, transposed: bool) -> ConvShape {
    ConvShape {
        kernel: 2 * stride,
        stride,
        dilation: 1,
        padding: stride.div_ceil(2),
        transposed,
        tile_reach: 0,
    }
}

/// [`strided`] run by minimal filtering over frames (`Conv1d::with_winograd`), as it may be
/// wherever the CPU has no AMX: an output also depends on the other frames of its tile (output
/// frames of a strided conv, `s` input samples each; input frames of a transposed one).
fn strided_by_tiles(stride: usize, transposed: bool) -> ConvShape {
    ConvShape {
        tile_reach: if transposed {
            transposed_winograd_reach_frames()
        } else {
            strided_winograd_reach_frames() * stride
        },
        ..strided(stride, transposed)
    }
}

/// The three dilated convs of a block's residual units (their 1x1 convs and skips add no reach).
fn unit_convs() -> impl Iterator<Item = ConvShape> {
    UNIT_DILATIONS
        .into_iter()
        .map(|d| ConvShape::plain(UNIT_KERNEL, d, 3 * d))
}

/// The encoder's convs in the order the signal meets them (the residual units' 7-tap convs run
/// by minimal filtering).
fn encoder_convs(cfg: &DacConfig) -> Vec<ConvShape> {
    let mut convs = vec![ConvShape::plain(7, 1, 3)];
    for &s in &cfg.downsampling_ratios {
        convs.extend(unit_convs().map(ConvShape::by_tiles));
        convs.push(strided_by_tiles(s, false));
    }
    convs.push(ConvShape::plain(3, 1, 1));
    convs
}

/// The decoder's convs in the order the latent meets them (its 7-tap convs but the last run
/// by minimal filtering).
fn decoder_convs(cfg: &DacConfig) -> Vec<ConvShape> {
    let mut convs = vec![ConvShape::plain(7, 1, 3).by_tiles()];
    for &s in &cfg.upsampling_ratios {
        convs.push(strided_by_tiles(s, true));
        convs.extend(unit_convs().map(ConvShape::by_tiles));
    }
    convs.push(ConvShape::plain(7, 1, 3));
    convs
}

/// Far enough from both ends that no index range is clipped by the signal's edges.
const PROBE_FRAME: i64 = 1 << 20;

/// Audio frames around frame f that its codes depend on: a window holding samples
/// `(f - left) * hop .. (f + 1 + right) * hop` gives frame f the same codes as the whole signal.
pub(crate) fn encoder_context(cfg: &DacConfig) -> Context {
    let hop = cfg.hop_length() as i64;
    let (mut lo, mut hi) = (PROBE_FRAME, PROBE_FRAME);
    for conv in encoder_convs(cfg).iter().rev() {
        (lo, hi) = conv.inputs_of(lo, hi);
    }
    let first = PROBE_FRAME * hop;
    let end = (PROBE_FRAME + 1) * hop; // exclusive: the frame's own samples
    Context {
        left_frames: ceil_div((first - lo).max(0), hop) as usize,
        right_frames: ceil_div((hi + 1 - end).max(0), hop) as usize,
    }
}

/// Code frames around frame f that its decoded samples `f * hop .. (f + 1) * hop` depend on.
pub(crate) fn decoder_context(cfg: &DacConfig) -> Context {
    let hop = cfg.hop_length() as i64;
    let (mut lo, mut hi) = (PROBE_FRAME * hop, (PROBE_FRAME + 1) * hop - 1);
    for conv in decoder_convs(cfg).iter().rev() {
        (lo, hi) = conv.inputs_of(lo, hi);
    }
    Context {
        left_frames: (PROBE_FRAME - lo).max(0) as usize,
        right_frames: (hi - PROBE_FRAME).max(0) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_ranges_invert_the_forward_map() {
        // Stride 5, kernel 10, padding 3: input i writes outputs 5i - 3 ..= 5i + 6.
        let up = strided(5, true);
        assert_eq!(up.inputs_of(7, 7), (1, 2));
        // Output 0 is written by inputs -1 (-8..=1) and 0 (-3..=6).
        assert_eq!(up.inputs_of(0, 0), (-1, 0));
        assert_eq!(up.inputs_of(-3, 1), (-1, 0));
        assert_eq!(up.inputs_of(2, 2), (0, 1));
        let down = strided(5, false);
        assert_eq!(down.inputs_of(2, 2), (7, 16));
    }

    #[test]
    fn real_configs_reach_a_few_frames() {
        // The direct convs alone reach 8 frames in the encoder (16 kHz by hand: 3 + 39 (units
        // at rate 1) + 1 + 78 + 4 + 312 + 24 + 1560 + 160 + 320 (final conv at the frame rate)
        // = 2501 samples) and 10 in the decoder; the minimal-filtering tiles (4 outputs, up to
        // 3 dilations more on each side of every 7-tap conv; 3 frames for the strided convs, 2
        // frames more on each side, and 4 for the transposed ones, 3 more) add the rest.
        let both = |frames| Context {
            left_frames: frames,
            right_frames: frames,
        };
        let got: Vec<(Context, Context)> = [
            DacConfig::dac_16khz(),
            DacConfig::dac_24khz(),
            DacConfig::dac_44khz(),
        ]
        .iter()
        .map(|cfg| (encoder_context(cfg), decoder_context(cfg)))
        .collect();
        assert_eq!(
            got,
            [
                (both(17), both(23)),
                (both(17), both(23)),
                (both(16), both(22))
            ]
        );
    }
}
