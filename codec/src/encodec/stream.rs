//! EnCodec chunk by chunk, for the causal models without chunking or normalisation (the 24 kHz
//! one): the same codes and audio as whole-signal encoding, in memory that does not grow with
//! the signal.

use candle_core::{DType, Tensor};
use tessera_core::quant::Quantizer;
use tessera_core::{Error, Result};

use super::Encodec;
use crate::codec::{AudioCodec, check_levels, one_line};
use crate::seanet::SeanetState;
use crate::stream::CausalSteps;

fn check_streamable(model: &Encodec) -> Result<()> {
    if !model.capabilities().streaming {
        return Err(Error::invalid(format!(
            "{} does not stream: only causal models without chunking, normalisation or group \
             norm do",
            model.id()
        )));
    }
    Ok(())
}

/// Encodes a signal chunk by chunk; the codes of all steps and [`Self::finish`] concatenate to
/// what [`Encodec::encode`] gives for the whole signal.
pub struct EncodecStreamingEncoder<'a> {
    model: &'a Encodec,
    n_q: usize,
    state: SeanetState,
}

impl<'a> EncodecStreamingEncoder<'a> {
    /// A stream keeping the first `n_q` codebooks.
    pub fn new(model: &'a Encodec, n_q: usize) -> Result<Self> {
        check_streamable(model)?;
        model.check_n_q(n_q)?;
        Ok(EncodecStreamingEncoder {
            model,
            n_q,
            state: model.encoder().new_state(),
        })
    }

    /// The next samples `[B, C, t]` (any length, the same batch size throughout) -> the codes
    /// `[B, n_q, frames]` completed so far, if any.
    pub fn step(&mut self, audio: &Tensor) -> Result<Option<Tensor>> {
        check_audio_chunk(self.model, audio)?;
        self.run(Some(audio), false).map_err(one_line)
    }

    /// Ends the signal: the last frames, padded as whole-signal encoding pads them. The stream
    /// is then reset.
    pub fn finish(&mut self) -> Result<Option<Tensor>> {
        let out = self.run(None, true).map_err(one_line);
        self.reset();
        out
    }

    /// Forget everything seen so far.
    pub fn reset(&mut self) {
        self.state = self.model.encoder().new_state();
    }

    fn run(&mut self, audio: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let x = audio
            .map(|a| a.to_dtype(DType::F32)?.to_device(self.model.device()))
            .transpose()?;
        let latent = self
            .model
            .encoder()
            .step(x.as_ref(), &mut self.state, last)?;
        latent
            .map(|l| self.model.quantizer().encode_n(&l, self.n_q))
            .transpose()
    }
}

/// Decodes codes chunk by chunk; the audio of all steps concatenates to what
/// [`Encodec::decode`] gives for all the codes at once.
pub struct EncodecStreamingDecoder<'a> {
    model: &'a Encodec,
    state: SeanetState,
}

impl<'a> EncodecStreamingDecoder<'a> {
    pub fn new(model: &'a Encodec) -> Result<Self> {
        check_streamable(model)?;
        Ok(EncodecStreamingDecoder {
            model,
            state: model.decoder().new_state(),
        })
    }

    /// The next frames of codes `[B, n_q, frames]` -> the audio `[B, C, t]` completed so far.
    pub fn step(&mut self, codes: &Tensor) -> Result<Option<Tensor>> {
        check_levels(self.model, std::slice::from_ref(codes))?;
        self.run(Some(codes), false).map_err(one_line)
    }

    /// Ends the stream (whatever is still held back is what whole-signal decoding trims).
    pub fn finish(&mut self) -> Result<Option<Tensor>> {
        let out = self.run(None, true).map_err(one_line);
        self.reset();
        out
    }

    pub fn reset(&mut self) {
        self.state = self.model.decoder().new_state();
    }

    fn run(&mut self, codes: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let latent = codes
            .map(|c| {
                self.model
                    .quantizer()
                    .decode(&c.to_device(self.model.device())?)
            })
            .transpose()?;
        Ok(self
            .model
            .decoder()
            .step(latent.as_ref(), &mut self.state, last)?)
    }
}

/// [`crate::codec::check_audio`] for one chunk of a stream.
pub(crate) fn check_audio_chunk(codec: &dyn AudioCodec, audio: &Tensor) -> Result<()> {
    crate::codec::check_audio(codec, audio).map(|_| ())
}

impl CausalSteps for EncodecStreamingEncoder<'_> {
    fn codec(&self) -> &dyn AudioCodec {
        self.model
    }
    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        EncodecStreamingEncoder::step(self, x)
    }
    fn finish(&mut self) -> Result<Option<Tensor>> {
        EncodecStreamingEncoder::finish(self)
    }
    fn reset(&mut self) {
        EncodecStreamingEncoder::reset(self)
    }
}

impl CausalSteps for EncodecStreamingDecoder<'_> {
    fn codec(&self) -> &dyn AudioCodec {
        self.model
    }
    fn step(&mut self, codes: &Tensor) -> Result<Option<Tensor>> {
        EncodecStreamingDecoder::step(self, codes)
    }
    fn finish(&mut self) -> Result<Option<Tensor>> {
        EncodecStreamingDecoder::finish(self)
    }
    fn reset(&mut self) {
        EncodecStreamingDecoder::reset(self)
    }
}
