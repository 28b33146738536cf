//! DAC's windowed encoder and decoder ([`ChunkedEncoder`], [`ChunkedDecoder`]) behind the
//! family-independent [`EncodeStream`] / [`DecodeStream`].

use candle_core::{DType, Tensor};
use tessera_core::Result;

use super::Dac;
use super::chunked::{ChunkPolicy, ChunkedDecoder, ChunkedEncoder};
use crate::stream::{DecodeStream, EncodeStream, audio_piece, codes_piece_is_empty};

pub(crate) struct DacEncodeStream<'a> {
    model: &'a Dac,
    n_q: Option<usize>,
    inner: ChunkedEncoder<'a>,
}

impl<'a> DacEncodeStream<'a> {
    pub(crate) fn new(model: &'a Dac, n_q: Option<usize>) -> Result<Self> {
        Ok(DacEncodeStream {
            model,
            n_q,
            inner: ChunkedEncoder::new(model, n_q, &ChunkPolicy::default())?,
        })
    }

    fn fresh(&self) -> Result<ChunkedEncoder<'a>> {
        ChunkedEncoder::new(self.model, self.n_q, &ChunkPolicy::default())
    }
}

impl EncodeStream for DacEncodeStream<'_> {
    fn push(&mut self, samples: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let Some(x) = audio_piece(self.model, samples)? else {
            return Ok(None);
        };
        let samples: Vec<f32> = x.flatten_all()?.to_vec1()?;
        Ok(self.inner.push(&samples)?.map(|c| vec![c]))
    }

    fn finish(&mut self) -> Result<Option<Vec<Tensor>>> {
        let fresh = self.fresh()?;
        let done = std::mem::replace(&mut self.inner, fresh);
        Ok(done.finish()?.map(|c| vec![c]))
    }

    fn reset(&mut self) {
        if let Ok(fresh) = self.fresh() {
            self.inner = fresh;
        }
    }
}

pub(crate) struct DacDecodeStream<'a> {
    model: &'a Dac,
    inner: ChunkedDecoder<'a>,
    /// Frames pushed and samples returned: the end is padded to `frames * hop` samples, as
    /// [`crate::codec::AudioCodec::decode`] pads DAC's output.
    frames: usize,
    samples: usize,
}

impl<'a> DacDecodeStream<'a> {
    pub(crate) fn new(model: &'a Dac) -> Result<Self> {
        Ok(DacDecodeStream {
            model,
            inner: ChunkedDecoder::new(model, &ChunkPolicy::default())?,
            frames: 0,
            samples: 0,
        })
    }

    fn counted(&mut self, audio: Option<Tensor>) -> Option<Tensor> {
        if let Some(a) = &audio {
            self.samples += a.dims()[1];
        }
        audio
    }
}

impl DecodeStream for DacDecodeStream<'_> {
    fn push(&mut self, levels: &[Tensor]) -> Result<Option<Tensor>> {
        if codes_piece_is_empty(self.model, levels)? {
            return Ok(None);
        }
        let out = self.inner.push(&levels[0])?;
        self.frames += levels[0].dims()[1];
        Ok(self.counted(out))
    }

    fn finish(&mut self) -> Result<Option<Tensor>> {
        let fresh = ChunkedDecoder::new(self.model, &ChunkPolicy::default())?;
        let done = std::mem::replace(&mut self.inner, fresh);
        let tail = done.finish();
        let want = self.frames * self.model.config.hop_length();
        let have = self.samples;
        self.frames = 0;
        self.samples = 0;
        let tail = tail?;
        let tail_len = tail.as_ref().map_or(0, |t| t.dims()[1]);
        let pad = want.saturating_sub(have + tail_len);
        Ok(match tail {
            Some(t) => Some(t.pad_with_zeros(1, 0, pad)?),
            None if pad > 0 => Some(Tensor::zeros((1, pad), DType::F32, self.model.device())?),
            None => None,
        })
    }

    fn reset(&mut self) {
        if let Ok(fresh) = ChunkedDecoder::new(self.model, &ChunkPolicy::default()) {
            self.inner = fresh;
        }
        self.frames = 0;
        self.samples = 0;
    }
}
