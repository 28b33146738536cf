//! Mimi chunk by chunk: the SEANet convs keep their unused input, the transformers keep the
//! keys and values of the last window and their position, the transposed convs keep the tail
//! that the next frames overlap. The codes (audio) of all steps concatenate to what
//! whole-signal encoding (decoding) gives, whatever the chunk sizes; memory does not grow with
//! the length of the stream.

use candle_core::{DType, Tensor};
use tessera_core::{Error, Result};

use super::Mimi;
use super::transformer::TransformerState;
use crate::codec::{AudioCodec, check_audio, check_levels, one_line};
use crate::seanet::{ConvState, ConvTrState, SeanetState};
use crate::stream::CausalSteps;

fn check_streamable(model: &Mimi) -> Result<()> {
    if !model.capabilities().streaming {
        return Err(Error::invalid(format!(
            "{} does not stream: its convolutions are not causal (or trim on the left)",
            model.id()
        )));
    }
    Ok(())
}

/// Runs a transformer over `[B, D, t]` frames continuing `state`.
fn transform(t: &super::Transformer, x: &Tensor, state: &mut TransformerState) -> Result<Tensor> {
    Ok(t.step(&x.transpose(1, 2)?, state)?
        .transpose(1, 2)?
        .contiguous()?)
}

/// Encodes a signal chunk by chunk. Chunks of any length work; multiples of the frame size
/// (1920 samples for kyutai/mimi) give their codes without delay.
pub struct MimiStreamingEncoder<'a> {
    model: &'a Mimi,
    n_q: usize,
    seanet: SeanetState,
    transformer: TransformerState,
    down: ConvState,
}

impl<'a> MimiStreamingEncoder<'a> {
    /// A stream keeping the first `n_q` codebooks.
    pub fn new(model: &'a Mimi, n_q: usize) -> Result<Self> {
        check_streamable(model)?;
        model.check_n_q(n_q)?;
        Ok(MimiStreamingEncoder {
            model,
            n_q,
            seanet: model.encoder.new_state(),
            transformer: model.encoder_transformer.new_state(),
            down: ConvState::default(),
        })
    }

    /// The next samples `[B, C, t]` (the same batch size throughout) -> the codes
    /// `[B, n_q, frames]` completed so far, if any.
    pub fn step(&mut self, audio: &Tensor) -> Result<Option<Tensor>> {
        check_audio(self.model, audio)?;
        let x = audio.to_dtype(DType::F32)?.to_device(&self.model.device)?;
        self.run(Some(&x), false).map_err(one_line)
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
        self.seanet = self.model.encoder.new_state();
        self.transformer = self.model.encoder_transformer.new_state();
        self.down = ConvState::default();
    }

    fn run(&mut self, x: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let m = self.model;
        let h = m.encoder.step(x, &mut self.seanet, last)?;
        let h = h
            .map(|h| transform(&m.encoder_transformer, &h, &mut self.transformer))
            .transpose()?;
        let latents = m.downsample.step(h.as_ref(), &mut self.down, last, false)?;
        latents
            .map(|l| m.quantizer.encode(&l, self.n_q))
            .transpose()
    }
}

/// Decodes codes chunk by chunk; the audio of all steps concatenates to what [`Mimi::decode`]
/// gives for all the codes at once (for kyutai/mimi each frame of codes gives its
/// `frame_size` samples at once).
pub struct MimiStreamingDecoder<'a> {
    model: &'a Mimi,
    up: ConvTrState,
    transformer: TransformerState,
    seanet: SeanetState,
}

impl<'a> MimiStreamingDecoder<'a> {
    pub fn new(model: &'a Mimi) -> Result<Self> {
        check_streamable(model)?;
        Ok(MimiStreamingDecoder {
            model,
            up: ConvTrState::default(),
            transformer: model.decoder_transformer.new_state(),
            seanet: model.decoder.new_state(),
        })
    }

    /// The next frames of codes `[B, n_q, frames]` -> the audio `[B, C, t]` completed so far.
    pub fn step(&mut self, codes: &Tensor) -> Result<Option<Tensor>> {
        check_levels(self.model, std::slice::from_ref(codes))?;
        self.run(Some(codes), false).map_err(one_line)
    }

    /// Ends the stream (what is still held back is what whole-signal decoding trims away,
    /// unless a layer was waiting for context). The stream is then reset.
    pub fn finish(&mut self) -> Result<Option<Tensor>> {
        let out = self.run(None, true).map_err(one_line);
        self.reset();
        out
    }

    /// Forget everything decoded so far.
    pub fn reset(&mut self) {
        self.up = ConvTrState::default();
        self.transformer = self.model.decoder_transformer.new_state();
        self.seanet = self.model.decoder.new_state();
    }

    fn run(&mut self, codes: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let m = self.model;
        let latents = codes
            .map(|c| m.quantizer.decode(&c.to_device(&m.device)?))
            .transpose()?;
        let x = m
            .upsample
            .step(latents.as_ref(), &mut self.up, last, false)?;
        let x = x
            .map(|x| transform(&m.decoder_transformer, &x, &mut self.transformer))
            .transpose()?;
        Ok(m.decoder.step(x.as_ref(), &mut self.seanet, last)?)
    }
}

impl CausalSteps for MimiStreamingEncoder<'_> {
    fn codec(&self) -> &dyn AudioCodec {
        self.model
    }
    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        MimiStreamingEncoder::step(self, x)
    }
    fn finish(&mut self) -> Result<Option<Tensor>> {
        MimiStreamingEncoder::finish(self)
    }
    fn reset(&mut self) {
        MimiStreamingEncoder::reset(self)
    }
}

impl CausalSteps for MimiStreamingDecoder<'_> {
    fn codec(&self) -> &dyn AudioCodec {
        self.model
    }
    fn step(&mut self, codes: &Tensor) -> Result<Option<Tensor>> {
        MimiStreamingDecoder::step(self, codes)
    }
    fn finish(&mut self) -> Result<Option<Tensor>> {
        MimiStreamingDecoder::finish(self)
    }
    fn reset(&mut self) {
        MimiStreamingDecoder::reset(self)
    }
}
