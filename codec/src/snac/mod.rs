//! SNAC, the Multi-Scale Neural Audio Codec (Siuzdak et al., 2024; pip `snac` 1.2.1).
//!
//! A DAC-style convolutional encoder/decoder around a residual VQ whose levels run at different
//! frame rates (coarse first). The 32 and 44.1 kHz models add windowed local attention. Weights
//! load from the hubertsiuzdak/snac_* repository layout: `config.json` (the keyword arguments of
//! `SNAC`) and `pytorch_model.bin` (the state dict, weight norms folded at load time).
//!
//! Encoding pads the input on the right with zeros to a multiple of
//! `hop_length * lcm(vq_strides[0], attn_window_size)`, as `SNAC.preprocess` does; decoding
//! returns audio for the padded length (the [`crate::codec`] helpers trim it). The decoder's
//! noise injection follows [`Noise`].

mod attention;
mod blocks;
mod chunked;
mod config;
mod context;
mod decoder;
mod encoder;
mod noise;
mod vq;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::NormalRng;
use tessera_core::{Checkpoint, Error, KeyMap, Result, WeightStore};

pub use chunked::{SnacChunkedDecoder, SnacChunkedEncoder};
pub use config::SnacConfig;
pub use context::Margins;

use crate::codec::{
    AudioCodec, Capabilities, DecodeOptions, EncodeOptions, LevelSpec, Noise, check_audio,
    check_levels, one_line,
};
use crate::stream::{DecodeStream, EncodeStream};
use decoder::Decoder;
use encoder::Encoder;
use noise::NoiseSource;
use vq::ResidualVq;

/// A loaded SNAC model.
#[derive(Debug, Clone)]
pub struct Snac {
    config: SnacConfig,
    encoder: Encoder,
    quantizer: ResidualVq,
    decoder: Decoder,
    device: Device,
    id: String,
}

impl Snac {
    /// Load a checkpoint directory in the hubertsiuzdak/snac_* layout; the directory name
    /// becomes the codec id.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let ckpt = Checkpoint::open(dir)?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "snac".to_string());
        Self::from_checkpoint(&ckpt, &id, device)
    }

    /// Load an opened checkpoint under the codec id `id`. Every weight in the checkpoint must be
    /// used, as torch's strict `load_state_dict` requires.
    pub fn from_checkpoint(ckpt: &Checkpoint, id: &str, device: &Device) -> Result<Self> {
        let config = SnacConfig::from_json(&ckpt.config_json()?)
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

    /// Build from a validated config and weights named as in the reference's state dict.
    pub fn new(config: SnacConfig, vb: VarBuilder, id: impl Into<String>) -> Result<Self> {
        config.validate()?;
        Ok(Snac {
            encoder: Encoder::load(vb.pp("encoder"), &config)?,
            quantizer: ResidualVq::load(vb.pp("quantizer"), &config)?,
            decoder: Decoder::load(vb.pp("decoder"), &config)?,
            device: vb.device().clone(),
            config,
            id: id.into(),
        })
    }

    pub fn config(&self) -> &SnacConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Audio `[B, 1, T]` at the model's rate -> codes per level `[B, T_k]` u32, coarse first.
    pub fn encode(&self, audio: &Tensor) -> Result<Vec<Tensor>> {
        self.encode_inner(audio).map_err(one_line)
    }

    fn encode_inner(&self, audio: &Tensor) -> Result<Vec<Tensor>> {
        let (_, t) = check_audio(self, audio)?;
        let x = audio.to_dtype(DType::F32)?.to_device(&self.device)?;
        let x = x.pad_with_zeros(2, 0, self.config.padded_len(t) - t)?;
        let z = self.encoder.forward(&x)?;
        Ok(self.quantizer.encode(&z)?)
    }

    /// Codes per level `[B, T_k]` u32 -> audio `[B, 1, T]` with `T = T_k * vq_strides[k] * hop`.
    pub fn decode(&self, codes: &[Tensor], noise: Noise) -> Result<Tensor> {
        self.decode_inner(codes, noise).map_err(one_line)
    }

    fn decode_inner(&self, codes: &[Tensor], noise: Noise) -> Result<Tensor> {
        self.check_codes(codes)?;
        let codes = codes
            .iter()
            .map(|c| c.to_device(&self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let z = self.quantizer.decode(&codes)?;
        let mut rng = match noise {
            _ if !self.config.noise => None,
            Noise::Off => None,
            Noise::Seeded(seed) => Some(NormalRng::new(seed)),
            Noise::Random => Some(NormalRng::from_entropy()),
        };
        Ok(self
            .decoder
            .forward(&z, rng.as_mut().map(|r| r as &mut dyn NoiseSource))?)
    }

    /// Level count, shapes, dtype, codebook range, and that all levels span the same number of
    /// latent frames (a multiple of the attention window when there is one).
    fn check_codes(&self, codes: &[Tensor]) -> Result<()> {
        let cfg = &self.config;
        if codes.len() != cfg.vq_strides.len() {
            return Err(Error::invalid(format!(
                "{} has {} code levels, got {}",
                self.id,
                cfg.vq_strides.len(),
                codes.len()
            )));
        }
        let mut latent = None;
        let mut batch = None;
        for (k, (c, &stride)) in codes.iter().zip(&cfg.vq_strides).enumerate() {
            let (b, frames) = match c.dims() {
                &[b, f] => (b, f),
                d => {
                    return Err(Error::invalid(format!(
                        "level {k} must be [batch, frames], got shape {d:?}"
                    )));
                }
            };
            if c.dtype() != DType::U32 {
                return Err(Error::invalid(format!(
                    "level {k} has dtype {:?}, codes are u32",
                    c.dtype()
                )));
            }
            if b == 0 || frames == 0 {
                return Err(Error::invalid(format!("level {k} holds no codes")));
            }
            if *batch.get_or_insert(b) != b {
                return Err(Error::invalid(format!(
                    "level {k} has batch size {b}, level 0 has {}",
                    batch.unwrap_or(0)
                )));
            }
            let span = frames * stride;
            let want = *latent.get_or_insert(span);
            if span != want {
                return Err(Error::invalid(format!(
                    "level {k} has {frames} frames, expected {} (every level must cover the same \
                     time: level 0 has {} frames at stride {})",
                    want / stride,
                    codes[0].dims()[1],
                    cfg.vq_strides[0]
                )));
            }
            let max = c.flatten_all()?.max(0)?.to_scalar::<u32>()?;
            if max as usize >= cfg.codebook_size {
                return Err(Error::invalid(format!(
                    "level {k} holds code {max}, out of range for codebook size {}",
                    cfg.codebook_size
                )));
            }
        }
        if let (Some(w), Some(t)) = (cfg.attn_window_size, latent)
            && t % w != 0
        {
            return Err(Error::invalid(format!(
                "the codes span {t} latent frames; the local attention needs a multiple of {w}"
            )));
        }
        Ok(())
    }
}

impl AudioCodec for Snac {
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
        (0..self.config.vq_strides.len())
            .map(|k| LevelSpec {
                n_q: 1,
                codebook_size: self.config.codebook_size as u32,
                frame_rate: self.config.frame_rate(k),
            })
            .collect()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: false,
            // Batches only group clips with the same padded length (see `padded_len`).
            batch_exact: true,
            decoder_noise: self.config.noise,
        }
    }

    fn padded_len(&self, n_samples: usize) -> usize {
        self.config.padded_len(n_samples)
    }

    fn encode(&self, audio: &Tensor, opts: &EncodeOptions) -> Result<Vec<Tensor>> {
        if let Some(n_q) = opts.n_q
            && n_q != 1
        {
            return Err(Error::invalid(format!(
                "SNAC has one codebook per level; n_q = {n_q} is not available"
            )));
        }
        Ok(Snac::encode(self, audio)?
            .iter()
            .map(|c| c.unsqueeze(1))
            .collect::<candle_core::Result<Vec<_>>>()?)
    }

    fn decode(&self, levels: &[Tensor], opts: &DecodeOptions) -> Result<Tensor> {
        check_levels(self, levels)?;
        let codes = levels
            .iter()
            .map(|l| l.squeeze(1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Snac::decode(self, &codes, opts.noise)
    }

    /// Windows with receptive-field margins ([`SnacChunkedEncoder`]): the codes of
    /// [`Snac::encode`] in bounded memory.
    fn encode_stream(&self, opts: &EncodeOptions) -> Result<Box<dyn EncodeStream + '_>> {
        if let Some(n_q) = opts.n_q
            && n_q != 1
        {
            return Err(Error::invalid(format!(
                "SNAC has one codebook per level; n_q = {n_q} is not available"
            )));
        }
        Ok(Box::new(SnacChunkedEncoder::new(
            self,
            chunked::DEFAULT_WINDOW_FRAMES,
        )?))
    }

    /// Windows with receptive-field margins ([`SnacChunkedDecoder`]); see `chunked.rs` for
    /// what holds with noise.
    fn decode_stream(
        &self,
        opts: &DecodeOptions,
        total_frames: Option<usize>,
    ) -> Result<Box<dyn DecodeStream + '_>> {
        Ok(Box::new(SnacChunkedDecoder::new(
            self,
            opts.noise,
            total_frames,
            chunked::DEFAULT_WINDOW_FRAMES,
        )?))
    }
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
