//! Mimi (Kyutai, 2024) as transformers' `MimiModel` runs it: a causal SEANet encoder, a
//! sliding-window transformer, a learned 2x downsampling to 12.5 Hz, a split residual VQ
//! (1 semantic + 31 acoustic codebooks of 2048), and the mirror-image decoder. Weights load
//! from the kyutai/mimi repository layout (`config.json` + `model.safetensors`).
//!
//! Everything is causal, so Mimi also runs chunk by chunk ([`MimiStreamingEncoder`],
//! [`MimiStreamingDecoder`]) with the same codes and audio as whole-signal processing.

mod attention_cpu;
mod config;
mod quantizer;
mod resample;
mod streaming;
mod transformer;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tessera_core::{Checkpoint, Error, KeyMap, Result};

pub use config::{MIMI_DEFAULT_N_Q, MimiConfig};
pub use streaming::{MimiStreamingDecoder, MimiStreamingEncoder};
pub use transformer::Activation;

use crate::codec::{
    AudioCodec, Capabilities, DecodeOptions, EncodeOptions, LevelSpec, check_audio, check_levels,
    one_line,
};
use crate::seanet::{SConv1d, SConvTranspose1d, Seanet};
use crate::shared_store::{build_strict, dir_id};
use crate::stream::{
    CausalDecode, CausalEncode, DecodeStream, EncodeStream, WholeDecodeStream, WholeEncodeStream,
};
use quantizer::SplitRvq;
use transformer::Transformer;

/// A codebook flag that the forward pass never reads.
const UNUSED_BUFFERS: &[&str] = &[".codebook.initialized"];

/// A loaded Mimi model.
#[derive(Debug, Clone)]
pub struct Mimi {
    config: MimiConfig,
    encoder: Seanet,
    encoder_transformer: Transformer,
    downsample: SConv1d,
    quantizer: SplitRvq,
    upsample: SConvTranspose1d,
    decoder_transformer: Transformer,
    decoder: Seanet,
    device: Device,
    id: String,
}

impl Mimi {
    /// Load a checkpoint directory in the kyutai/mimi layout; the directory name becomes the
    /// codec id.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let ckpt = Checkpoint::open(dir)?;
        Self::from_checkpoint(&ckpt, &dir_id(dir, "mimi"), device)
    }

    /// Load an opened checkpoint under the codec id `id`. Every weight but the codebooks'
    /// `initialized` flags must be used, as torch's strict `load_state_dict` requires.
    pub fn from_checkpoint(ckpt: &Checkpoint, id: &str, device: &Device) -> Result<Self> {
        let config = MimiConfig::from_json(&ckpt.config_json()?)
            .and_then(|c| c.validate().map(|()| c))
            .map_err(|e| e.with_path(&ckpt.config))?;
        build_strict(ckpt, &KeyMap::new(), device, UNUSED_BUFFERS, |vb| {
            Self::new(config, vb, id)
        })
    }

    /// Build from a config and weights named as in the kyutai/mimi state dict.
    pub fn new(config: MimiConfig, vb: VarBuilder, id: impl Into<String>) -> Result<Self> {
        config.validate()?;
        let seanet = config.seanet()?;
        let spec = config.transformer()?;
        Ok(Mimi {
            encoder: Seanet::encoder(vb.pp("encoder"), &seanet)?,
            encoder_transformer: Transformer::load(vb.pp("encoder_transformer"), &spec)?,
            downsample: resample::downsample(vb.pp("downsample"), &config)?,
            quantizer: SplitRvq::load(vb.pp("quantizer"), &config)?,
            upsample: resample::upsample(vb.pp("upsample"), &config)?,
            decoder_transformer: Transformer::load(vb.pp("decoder_transformer"), &spec)?,
            decoder: Seanet::decoder(vb.pp("decoder"), &seanet)?,
            device: vb.device().clone(),
            config,
            id: id.into(),
        })
    }

    pub fn config(&self) -> &MimiConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn check_n_q(&self, n_q: usize) -> Result<()> {
        let (lo, hi) = (
            self.config.num_semantic_quantizers,
            self.config.num_quantizers,
        );
        if n_q < lo || n_q > hi {
            return Err(Error::invalid(format!(
                "{} takes {lo}..={hi} codebooks, n_q = {n_q} is not available",
                self.id
            )));
        }
        Ok(())
    }

    /// Audio `[B, C, T]` at the model's rate -> codes `[B, n_q, ceil(T / frame_size)]` u32.
    pub fn encode(&self, audio: &Tensor, n_q: usize) -> Result<Tensor> {
        self.encode_inner(audio, n_q).map_err(one_line)
    }

    fn encode_inner(&self, audio: &Tensor, n_q: usize) -> Result<Tensor> {
        check_audio(self, audio)?;
        self.check_n_q(n_q)?;
        let x = audio.to_dtype(DType::F32)?.to_device(&self.device)?;
        let x = self.encoder.forward(&x)?;
        let mut state = self.encoder_transformer.new_state();
        let x = self
            .encoder_transformer
            .step(&x.transpose(1, 2)?, &mut state)?
            .transpose(1, 2)?
            .contiguous()?;
        let latents = self.downsample.forward(&x)?;
        self.quantizer.encode(&latents, n_q)
    }

    /// Codes `[B, n_q, F]` -> audio `[B, C, F * frame_size]`.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        self.decode_inner(codes).map_err(one_line)
    }

    fn decode_inner(&self, codes: &Tensor) -> Result<Tensor> {
        check_levels(self, std::slice::from_ref(codes))?;
        let latents = self.quantizer.decode(&codes.to_device(&self.device)?)?;
        let x = self.upsample.forward(&latents)?;
        let mut state = self.decoder_transformer.new_state();
        let x = self
            .decoder_transformer
            .step(&x.transpose(1, 2)?, &mut state)?
            .transpose(1, 2)?
            .contiguous()?;
        Ok(self.decoder.forward(&x)?)
    }
}

impl AudioCodec for Mimi {
    fn id(&self) -> &str {
        &self.id
    }

    fn sample_rate(&self) -> u32 {
        self.config.sampling_rate
    }

    fn channels(&self) -> usize {
        self.config.audio_channels
    }

    fn levels(&self) -> Vec<LevelSpec> {
        vec![LevelSpec {
            n_q: self.config.num_quantizers,
            codebook_size: self.config.codebook_size as u32,
            frame_rate: self.config.code_frame_rate(),
        }]
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: self.config.use_causal_conv && self.config.trim_right_ratio == 1.0,
            // Padding depends on the length: only clips of equal length share a batch.
            batch_exact: true,
            decoder_noise: false,
        }
    }

    /// `n_q: None` keeps [`MIMI_DEFAULT_N_Q`] codebooks (Moshi's choice) of the 32.
    fn encode(&self, audio: &Tensor, opts: &EncodeOptions) -> Result<Vec<Tensor>> {
        let n_q = opts.n_q.unwrap_or_else(|| self.config.default_n_q());
        Ok(vec![Mimi::encode(self, audio, n_q)?])
    }

    fn decode(&self, levels: &[Tensor], _opts: &DecodeOptions) -> Result<Tensor> {
        check_levels(self, levels)?;
        Mimi::decode(self, &levels[0])
    }

    /// Stateful causal streaming when the config allows it (kyutai/mimi does), else the
    /// whole-signal fallback.
    fn encode_stream(&self, opts: &EncodeOptions) -> Result<Box<dyn EncodeStream + '_>> {
        if !self.capabilities().streaming {
            return Ok(Box::new(WholeEncodeStream::new(self, opts)));
        }
        let n_q = opts.n_q.unwrap_or_else(|| self.config.default_n_q());
        Ok(Box::new(CausalEncode::new(MimiStreamingEncoder::new(
            self, n_q,
        )?)))
    }

    fn decode_stream(
        &self,
        opts: &DecodeOptions,
        _total_frames: Option<usize>,
    ) -> Result<Box<dyn DecodeStream + '_>> {
        if !self.capabilities().streaming {
            return Ok(Box::new(WholeDecodeStream::new(self, opts)));
        }
        Ok(Box::new(CausalDecode::new(MimiStreamingDecoder::new(
            self,
        )?)))
    }
}
