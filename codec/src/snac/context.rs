//! How far SNAC looks around a latent frame, and the margins that make window-by-window
//! processing give exactly the whole-signal results.
//!
//! The convs reach a few frames on each side (computed from their geometry, with DAC's index
//! arithmetic: SNAC's blocks have the same shapes). The local attention of the 32/44 kHz models
//! works in non-overlapping windows of `W` latent frames counted from the signal's start, so a
//! processing window must start and end on attention windows, and every attention window whose
//! output is needed must get exact inputs over its whole span. Margins are therefore rounded up
//! to whole attention windows (and, for decoding, to whole coarse code frames).

use crate::dac::context::{ConvShape, ceil_div, strided};

use super::config::SnacConfig;

/// Latent frames processed and thrown away on each side of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Margins {
    pub left: usize,
    pub right: usize,
}

/// The 7-tap "same" convs at the ends of the encoder and decoder reach this far.
const EDGE_CONV_REACH: usize = 3;

fn residual_units() -> [ConvShape; 3] {
    [1, 3, 9].map(|d| ConvShape::plain(7, d, 3 * d))
}

/// The encoder's convs before the attention, in the order the signal meets them.
fn encoder_convs(cfg: &SnacConfig) -> Vec<ConvShape> {
    let mut convs = vec![ConvShape::plain(7, 1, 3)];
    for &s in &cfg.encoder_rates {
        convs.extend(residual_units());
        convs.push(strided(s, false));
    }
    convs
}

/// The decoder's convs after the attention, in the order the latent meets them.
fn decoder_convs(cfg: &SnacConfig) -> Vec<ConvShape> {
    let mut convs = Vec::new();
    for &s in &cfg.decoder_rates {
        convs.push(strided(s, true));
        convs.extend(residual_units());
    }
    convs.push(ConvShape::plain(7, 1, 3));
    convs
}

/// Far enough from both ends that no index range is clipped by the signal's edges.
const PROBE_FRAME: i64 = 1 << 20;

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Margins for encoding windows of latent frames (aligned to the attention windows).
pub(crate) fn encoder_margins(cfg: &SnacConfig) -> Margins {
    let hop = cfg.hop_length() as i64;
    let (mut lo, mut hi) = (PROBE_FRAME, PROBE_FRAME);
    for conv in encoder_convs(cfg).iter().rev() {
        (lo, hi) = conv.inputs_of(lo, hi);
    }
    let left = ceil_div((PROBE_FRAME * hop - lo).max(0), hop) as usize;
    let right = ceil_div((hi + 1 - (PROBE_FRAME + 1) * hop).max(0), hop) as usize;
    let w = cfg.attn_window_size.unwrap_or(1);
    // The final conv reads whole attention windows' outputs, which read their whole windows.
    let after = round_up(EDGE_CONV_REACH, w);
    Margins {
        left: round_up(after + left, w),
        right: round_up(after + right, w),
    }
}

/// Margins for decoding windows of latent frames (aligned to the attention windows and to the
/// coarsest code frames).
pub(crate) fn decoder_margins(cfg: &SnacConfig) -> Margins {
    let hop = cfg.hop_length() as i64;
    let (mut lo, mut hi) = (PROBE_FRAME * hop, (PROBE_FRAME + 1) * hop - 1);
    for conv in decoder_convs(cfg).iter().rev() {
        (lo, hi) = conv.inputs_of(lo, hi);
    }
    let left = (PROBE_FRAME - lo).max(0) as usize;
    let right = (hi - PROBE_FRAME).max(0) as usize;
    let w = cfg.attn_window_size.unwrap_or(1);
    let m = cfg.latent_multiple();
    Margins {
        left: round_up(round_up(left, w) + EDGE_CONV_REACH, m),
        right: round_up(round_up(right, w) + EDGE_CONV_REACH, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_aligned_and_cover_the_reach() {
        for cfg in [
            SnacConfig::snac_24khz(),
            SnacConfig::snac_32khz(),
            SnacConfig::snac_44khz(),
        ] {
            let w = cfg.attn_window_size.unwrap_or(1);
            let enc = encoder_margins(&cfg);
            let dec = decoder_margins(&cfg);
            assert!(enc.left > EDGE_CONV_REACH && enc.right > EDGE_CONV_REACH);
            assert_eq!((enc.left % w, enc.right % w), (0, 0));
            assert_eq!(dec.left % cfg.latent_multiple(), 0);
            assert_eq!(dec.right % cfg.latent_multiple(), 0);
            assert!(dec.left > EDGE_CONV_REACH);
        }
        // Pinned: a change in the geometry must be a conscious one. The 24 kHz model reaches
        // 10 latent frames (encoder) and 12 (decoder) each way; the attention models' reach
        // rounds up to two windows of 32.
        let m = |l, r| Margins { left: l, right: r };
        let cfg = SnacConfig::snac_24khz();
        assert_eq!(encoder_margins(&cfg), m(10, 10));
        assert_eq!(decoder_margins(&cfg), m(12, 12));
        for cfg in [SnacConfig::snac_32khz(), SnacConfig::snac_44khz()] {
            assert_eq!(encoder_margins(&cfg), m(64, 64));
            assert_eq!(decoder_margins(&cfg), m(64, 64));
        }
    }
}
