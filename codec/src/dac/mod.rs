//! DAC, the Descript Audio Codec (Kumar et al., 2023), as transformers' `DacModel` runs it.
//!
//! A convolutional encoder (snake activations, dilated residual units, strided convs) turns the
//! waveform into one latent frame per `hop_length` samples; a residual VQ of `n_codebooks`
//! stages with factorised, l2-normalised codes (`VqLayout::DAC`) turns each frame into codes; the
//! decoder mirrors the encoder with transposed convs. Weights load from the descript/dac_*
//! repository layout: `config.json` (transformers' `DacConfig`) and `model.safetensors` (plain
//! weights; weight-normed ones, `weight_g`/`weight_v` or `parametrizations`, are folded).
//!
//! Encoding pads the input on the right with zeros to a multiple of `hop_length`, as
//! `DacFeatureExtractor` and the descript package do before `encode` (the model itself does not).
//! [`Dac::decode`] returns what `DacModel.decode` returns: `frames * hop` samples minus one for
//! each odd stride; through [`AudioCodec::decode`] that tail is filled with zeros so that the
//! audio covers the padded input. Long inputs go through [`ChunkedEncoder`]/[`ChunkedDecoder`].

mod blocks;
mod chunked;
mod config;
pub(crate) mod context;
mod decoder;
mod encoder;
mod stream;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use tessera_core::quant::{Quantizer, ResidualVectorQuantizer, VqLayout};
use tessera_core::{Checkpoint, Error, KeyMap, Result, WeightStore};

pub use chunked::{ChunkPolicy, ChunkedDecoder, ChunkedEncoder};
pub use config::DacConfig;
pub use context::Context;

use crate::codec::{
    AudioCodec, Capabilities, DecodeOptions, EncodeOptions, LevelSpec, check_audio, check_levels,
    one_line,
};
use crate::stream::{DecodeStream, EncodeStream};
use decoder::Decoder;
use encoder::Encoder;

/// Longer inputs are encoded and decoded window by window ([`ChunkPolicy::default`]). The
/// results are identical either way (see [`ChunkPolicy`]); whole-signal activations would grow
/// with the input (64 channels at the sample rate: 15 GB for an hour at 16 kHz).
pub const AUTO_CHUNK_FRAMES: usize = 1024;

/// A loaded DAC model.
#[derive(Debug, Clone)]
pub struct Dac {
    config: DacConfig,
    encoder: Encoder,
    quantizer: ResidualVectorQuantizer,
    decoder: Decoder,
    device: Device,
    id: String,
}

impl Dac {
    /// Load a checkpoint directory in the descript/dac_* layout; the directory name becomes the
    /// codec id.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let ckpt = Checkpoint::open(dir)?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dac".to_string());
        Self::from_checkpoint(&ckpt, &id, device)
    }

    /// Load an opened checkpoint under the codec id `id`. Every weight in the checkpoint must be
    /// used, as a strict `load_state_dict` requires.
    pub fn from_checkpoint(ckpt: &Checkpoint, id: &str, device: &Device) -> Result<Self> {
        let config = DacConfig::from_json(&ckpt.config_json()?)
            .and_then(|c| c.validate().map(|()| c))
            .map_err(|e| e.with_path(&ckpt.config))?;
        let store = Arc::new(ckpt.store(&KeyMap::new())?);
        let vb = VarBuilder::from_backend(
            Box::new(SharedStore(store.clone())),
            DType::F32,
            device.clone(),
        );
        let model = Self::new(config, vb, id).map_err(one_line)?;
        let unused = store.unused_keys();
        if let Some(first) = unused.first() {
            return Err(Error::file(
                &ckpt.weights[0],
                format!(
                    "{} weight(s) are not part of the model that {} describes (e.g. '{first}'); \
                     the config and the checkpoint disagree",
                    unused.len(),
                    ckpt.config.display()
                ),
            ));
        }
        Ok(model)
    }

    /// Build from a config and weights named as in transformers' `DacModel` state dict.
    pub fn new(config: DacConfig, vb: VarBuilder, id: impl Into<String>) -> Result<Self> {
        config.validate()?;
        let quantizer_vb = vb.pp("quantizer");
        check_quantizer_shapes(&quantizer_vb, &config)?;
        let quantizer = ResidualVectorQuantizer::load(
            &quantizer_vb,
            "quantizers",
            config.n_codebooks,
            &VqLayout::DAC,
        )?;
        Ok(Dac {
            encoder: Encoder::load(vb.pp("encoder"), &config)?,
            decoder: Decoder::load(vb.pp("decoder"), &config)?,
            quantizer,
            device: vb.device().clone(),
            config,
            id: id.into(),
        })
    }

    pub fn config(&self) -> &DacConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Audio frames on each side that a frame's codes depend on (see [`ChunkPolicy`]).
    pub fn encoder_context(&self) -> Context {
        context::encoder_context(&self.config)
    }

    /// Code frames on each side that a frame's decoded samples depend on.
    pub fn decoder_context(&self) -> Context {
        context::decoder_context(&self.config)
    }

    /// Audio `[B, 1, T]` at the model's rate -> codes `[B, n_q, ceil(T / hop)]` u32 from the first
    /// `n_q` codebooks (all when `None`). The audio is zero-padded to a multiple of the hop.
    /// Inputs longer than [`AUTO_CHUNK_FRAMES`] frames go through [`Dac::encode_chunked`] with
    /// exact margins: the same codes, in memory that does not grow with the input.
    pub fn encode(&self, audio: &Tensor, n_q: Option<usize>) -> Result<Tensor> {
        self.encode_inner(audio, n_q).map_err(one_line)
    }

    fn encode_inner(&self, audio: &Tensor, n_q: Option<usize>) -> Result<Tensor> {
        let depth = self.check_n_q(n_q)?;
        let (_, t) = check_audio(self, audio)?;
        if t > AUTO_CHUNK_FRAMES * self.config.hop_length() {
            return self.encode_chunked(audio, n_q, &ChunkPolicy::default());
        }
        let x = audio.to_dtype(DType::F32)?.to_device(&self.device)?;
        let x = x.pad_with_zeros(2, 0, self.config.padded_len(t) - t)?;
        self.encode_padded(&x, depth, 0)
    }

    /// The model's encode on audio whose length is already a multiple of the hop.
    pub(crate) fn encode_padded(
        &self,
        x: &Tensor,
        n_q: usize,
        origin_frame: usize,
    ) -> Result<Tensor> {
        let z = self.encoder.forward_at(x, origin_frame)?;
        self.quantizer.encode_n(&z, n_q)
    }

    fn check_n_q(&self, n_q: Option<usize>) -> Result<usize> {
        let max = self.config.n_codebooks;
        match n_q {
            None => Ok(max),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(Error::invalid(format!(
                "{} has {max} codebooks; n_q = {n} is not available (1..={max})",
                self.id
            ))),
        }
    }

    /// Codes `[B, n, F]` u32 (the first `n` codebooks) -> audio `[B, 1, decoded_len(F)]`, as
    /// `DacModel.decode(audio_codes=...)` computes it. More than [`AUTO_CHUNK_FRAMES`] frames are
    /// decoded window by window with exact margins (the same samples, bounded memory).
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        self.decode_inner(codes).map_err(one_line)
    }

    fn decode_inner(&self, codes: &Tensor) -> Result<Tensor> {
        check_levels(self, std::slice::from_ref(codes))?;
        if codes.dims()[2] > AUTO_CHUNK_FRAMES {
            return self.decode_chunked(codes, &ChunkPolicy::default());
        }
        self.decode_window(codes, 0)
    }

    /// The model's decode in one pass, on checked codes whose first frame is frame
    /// `origin_frame` of the signal.
    pub(crate) fn decode_window(&self, codes: &Tensor, origin_frame: usize) -> Result<Tensor> {
        let z = self.quantizer.decode(&codes.to_device(&self.device)?)?;
        Ok(self.decoder.forward_at(&z, origin_frame)?)
    }
}

impl AudioCodec for Dac {
    fn id(&self) -> &str {
        &self.id
    }

    fn sample_rate(&self) -> u32 {
        self.config.sampling_rate
    }

    fn channels(&self) -> usize {
        1
    }

    fn levels(&self) -> Vec<LevelSpec> {
        vec![LevelSpec {
            n_q: self.config.n_codebooks,
            codebook_size: self.config.codebook_size as u32,
            frame_rate: self.config.frame_rate(),
        }]
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: false,
            // Batches only group clips with the same padded length (see `padded_len`).
            batch_exact: true,
            decoder_noise: false,
        }
    }

    fn padded_len(&self, n_samples: usize) -> usize {
        self.config.padded_len(n_samples)
    }

    fn encode(&self, audio: &Tensor, opts: &EncodeOptions) -> Result<Vec<Tensor>> {
        Ok(vec![Dac::encode(self, audio, opts.n_q)?])
    }

    /// [`Dac::decode`], with the samples that odd strides lose at the end filled with zeros so
    /// that the audio spans `frames * hop` samples, the padded input.
    fn decode(&self, levels: &[Tensor], _opts: &DecodeOptions) -> Result<Tensor> {
        check_levels(self, levels)?;
        let audio = Dac::decode(self, &levels[0])?;
        let want = levels[0].dims()[2] * self.config.hop_length();
        let have = audio.dims()[2];
        Ok(audio.pad_with_zeros(2, 0, want - have)?)
    }

    /// Windows with receptive-field margins ([`ChunkedEncoder`]): the codes of [`Dac::encode`]
    /// in bounded memory.
    fn encode_stream(&self, opts: &EncodeOptions) -> Result<Box<dyn EncodeStream + '_>> {
        Ok(Box::new(stream::DacEncodeStream::new(self, opts.n_q)?))
    }

    /// Windows with receptive-field margins ([`ChunkedDecoder`]): the audio of
    /// [`AudioCodec::decode`] in bounded memory.
    fn decode_stream(
        &self,
        _opts: &DecodeOptions,
        _total_frames: Option<usize>,
    ) -> Result<Box<dyn DecodeStream + '_>> {
        Ok(Box::new(stream::DacDecodeStream::new(self)?))
    }
}

/// The quantizer loads its tensors whatever their shapes; ask for them with the shapes the
/// config implies first, so that a mismatch names the key and the file.
fn check_quantizer_shapes(vb: &VarBuilder, cfg: &DacConfig) -> candle_core::Result<()> {
    let (hidden, dim) = (cfg.hidden_size, cfg.codebook_dim);
    for i in 0..cfg.n_codebooks {
        let q = vb.pp("quantizers").pp(i);
        q.get((cfg.codebook_size, dim), "codebook.weight")?;
        q.get((dim, hidden, 1), "in_proj.weight")?;
        q.get(dim, "in_proj.bias")?;
        q.get((hidden, dim, 1), "out_proj.weight")?;
        q.get(hidden, "out_proj.bias")?;
    }
    Ok(())
}

/// Lets the loader ask the store which weights the model never used after building it.
struct SharedStore(Arc<WeightStore>);

impl candle_nn::var_builder::SimpleBackend for SharedStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
