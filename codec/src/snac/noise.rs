//! Where SNAC's decoder noise comes from.
//!
//! The whole-signal decoder draws, block after block, `B * T_i` N(0, 1) samples (row-major over
//! `[B, 1, T_i]`) from one [`NormalRng`] stream; this layout is what the fixtures check against
//! the reference. A decoder working window by window must draw, for each window, the values that
//! the whole pass draws at the same positions: [`PositionalNoise`] computes where they sit in
//! the stream (which depends on the whole signal's length) and jumps there.

use candle_core::{Device, Tensor};
use tessera_core::nn::NormalRng;

/// Noise for the decoder's upsampling blocks.
pub(crate) trait NoiseSource {
    /// N(0, 1) noise `[b, 1, t]` for upsampling block `block`, whose output has `t` steps.
    fn draw(
        &mut self,
        block: usize,
        b: usize,
        t: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor>;
}

/// The whole-signal layout: one stream, drawn in order.
impl NoiseSource for NormalRng {
    fn draw(
        &mut self,
        _block: usize,
        b: usize,
        t: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.randn((b, 1, t), device)
    }
}

/// Length assumed when the whole signal's length is unknown: the noise is then a fixed function
/// of the seed and the position, but not the values the whole-signal pass draws.
const UNKNOWN_LATENT_FRAMES: u64 = 1 << 40;

/// The values the whole-signal pass over `total_latent` latent frames (batch 1) draws, for a
/// window starting at latent frame `start`.
#[derive(Debug, Clone)]
pub(crate) struct PositionalNoise {
    seed: u64,
    /// Steps of block i's output per latent frame.
    upsampling: Vec<u64>,
    /// Draws of the stream before block i's first value.
    block_start: Vec<u64>,
    start: u64,
}

impl PositionalNoise {
    pub fn new(seed: u64, total_latent: Option<usize>, decoder_rates: &[usize]) -> Self {
        let total = total_latent.map_or(UNKNOWN_LATENT_FRAMES, |t| t as u64);
        let mut upsampling = Vec::with_capacity(decoder_rates.len());
        let mut block_start = Vec::with_capacity(decoder_rates.len());
        let (mut factor, mut draws) = (1u64, 0u64);
        for &r in decoder_rates {
            factor *= r as u64;
            upsampling.push(factor);
            block_start.push(draws);
            // Each pair of values takes two draws; an odd count still takes a whole pair.
            draws = draws.wrapping_add(2 * (total.wrapping_mul(factor)).div_ceil(2));
        }
        PositionalNoise {
            seed,
            upsampling,
            block_start,
            start: 0,
        }
    }

    /// The next windows start at latent frame `start`.
    pub fn set_start(&mut self, start: usize) {
        self.start = start as u64;
    }
}

impl NoiseSource for PositionalNoise {
    fn draw(
        &mut self,
        block: usize,
        b: usize,
        t: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if b != 1 {
            candle_core::bail!("windowed decoding with noise works on one clip at a time");
        }
        let pos = self.start * self.upsampling[block];
        // Values come in pairs from two draws each; an odd position is a pair's second value.
        let skip = (pos % 2) as usize;
        let draws = self.block_start[block].wrapping_add(pos - pos % 2);
        let mut values = vec![0f32; t + skip];
        NormalRng::skipped(self.seed, draws).fill(&mut values);
        values.drain(..skip);
        Tensor::from_vec(values, (1, 1, t), device)
    }
}
