//! EnCodec (Défossez et al., 2022) as transformers' `EncodecModel` runs it: a SEANet encoder
//! with an LSTM, a residual VQ whose depth follows the bandwidth, and the mirror-image decoder.
//! Weights load from the facebook/encodec_* repository layout (`config.json` +
//! `model.safetensors`, weight norms folded at load time).
//!
//! What the config says is what runs: the 24 kHz model encodes the whole signal at once with
//! causal convolutions (and so also streams, see [`stream`]); the 48 kHz model normalises and
//! encodes 1 s chunks with 1% overlap and decodes them with the reference's linear
//! overlap-add. Per-chunk scales of normalising models come back with the codes
//! ([`EncodecFrames`]).

mod config;
mod stream;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tessera_core::quant::{Quantizer, ResidualVectorQuantizer, VqLayout};
use tessera_core::{Checkpoint, Error, KeyMap, Result};

pub use config::EncodecConfig;
pub use stream::{EncodecStreamingDecoder, EncodecStreamingEncoder};

use crate::codec::{
    AudioCodec, Capabilities, DecodeOptions, EncodeOptions, LevelSpec, check_audio, check_levels,
    one_line,
};
use crate::seanet::Seanet;
use crate::shared_store::{build_strict, dir_id};
use crate::stream::{
    CausalDecode, CausalEncode, DecodeStream, EncodeStream, WholeDecodeStream, WholeEncodeStream,
};

/// Training-only buffers of the codebooks: the forward pass uses `embed` alone.
const UNUSED_BUFFERS: &[&str] = &[
    ".codebook.inited",
    ".codebook.cluster_size",
    ".codebook.embed_avg",
];

/// A loaded EnCodec model.
#[derive(Debug, Clone)]
pub struct Encodec {
    config: EncodecConfig,
    encoder: Seanet,
    quantizer: ResidualVectorQuantizer,
    decoder: Seanet,
    device: Device,
    id: String,
}

/// Codes of a signal, chunk by chunk as the model encodes it (one chunk unless the config sets
/// `chunk_length_s` and `overlap`).
#[derive(Debug, Clone)]
pub struct EncodecFrames {
    /// One `[B, n_q, T_c]` u32 tensor per chunk.
    pub codes: Vec<Tensor>,
    /// One `[B]` f32 tensor per chunk when the model normalises its input (the RMS each chunk
    /// was divided by, which decoding multiplies back), else `None`.
    pub scales: Option<Vec<Tensor>>,
}

impl Encodec {
    /// Load a checkpoint directory in the facebook/encodec_* layout; the directory name becomes
    /// the codec id.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let ckpt = Checkpoint::open(dir)?;
        Self::from_checkpoint(&ckpt, &dir_id(dir, "encodec"), device)
    }

    /// Load an opened checkpoint under the codec id `id`. Every weight but the codebooks'
    /// training buffers must be used, as torch's strict `load_state_dict` requires.
    pub fn from_checkpoint(ckpt: &Checkpoint, id: &str, device: &Device) -> Result<Self> {
        let config = EncodecConfig::from_json(&ckpt.config_json()?)
            .and_then(|c| c.validate().map(|()| c))
            .map_err(|e| e.with_path(&ckpt.config))?;
        build_strict(ckpt, &KeyMap::new(), device, UNUSED_BUFFERS, |vb| {
            Self::new(config, vb, id)
        })
    }

    /// Build from a config and weights named as in transformers' state dict.
    pub fn new(config: EncodecConfig, vb: VarBuilder, id: impl Into<String>) -> Result<Self> {
        config.validate()?;
        let seanet = config.seanet()?;
        // The quantizer reads its codebooks without a shape; check them against the config
        // first, so that a mismatch names the weight and the file.
        let layers = vb.pp("quantizer").pp("layers");
        for i in 0..config.num_quantizers() {
            layers
                .pp(i)
                .pp("codebook")
                .get((config.codebook_size, config.codebook_dim()), "embed")?;
        }
        let quantizer = ResidualVectorQuantizer::load(
            &vb.pp("quantizer"),
            "layers",
            config.num_quantizers(),
            &VqLayout::ENCODEC_TRANSFORMERS,
        )?;
        if quantizer.dim() != config.hidden_size {
            return Err(Error::invalid(format!(
                "the codebooks have dimension {}, the config's hidden_size is {}",
                quantizer.dim(),
                config.hidden_size
            )));
        }
        Ok(Encodec {
            encoder: Seanet::encoder(vb.pp("encoder"), &seanet)?,
            decoder: Seanet::decoder(vb.pp("decoder"), &seanet)?,
            quantizer,
            device: vb.device().clone(),
            config,
            id: id.into(),
        })
    }

    pub fn config(&self) -> &EncodecConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Codebooks used at `kbps` (one of the config's `target_bandwidths`).
    pub fn n_q_for_bandwidth(&self, kbps: f64) -> Result<usize> {
        self.config.n_q_for_bandwidth(kbps)
    }

    pub(crate) fn encoder(&self) -> &Seanet {
        &self.encoder
    }

    pub(crate) fn decoder(&self) -> &Seanet {
        &self.decoder
    }

    pub(crate) fn quantizer(&self) -> &ResidualVectorQuantizer {
        &self.quantizer
    }

    fn check_n_q(&self, n_q: usize) -> Result<()> {
        let max = self.config.num_quantizers();
        if n_q == 0 || n_q > max {
            return Err(Error::invalid(format!(
                "{} has 1..={max} codebooks, n_q = {n_q} is not available",
                self.id
            )));
        }
        Ok(())
    }

    /// Audio `[B, C, T]` at the model's rate -> codes with the first `n_q` codebooks, chunked
    /// as the config says.
    pub fn encode(&self, audio: &Tensor, n_q: usize) -> Result<EncodecFrames> {
        self.encode_inner(audio, n_q).map_err(one_line)
    }

    fn encode_inner(&self, audio: &Tensor, n_q: usize) -> Result<EncodecFrames> {
        let (_, len) = check_audio(self, audio)?;
        self.check_n_q(n_q)?;
        let x = audio.to_dtype(DType::F32)?.to_device(&self.device)?;
        let (chunk, stride) = match (self.config.chunk_length(), self.config.chunk_stride()) {
            (Some(c), Some(s)) => (c, s),
            (Some(c), None) if len > c => {
                return Err(Error::invalid(format!(
                    "the audio is {len} samples but this model takes at most {c} (chunk_length_s \
                     without overlap)"
                )));
            }
            _ => (len, len),
        };
        let mut codes = Vec::new();
        let mut scales = Vec::new();
        for offset in (0..len).step_by(stride) {
            let piece = x.narrow(2, offset, chunk.min(len - offset))?;
            let (c, scale) = self.encode_chunk(&piece, n_q)?;
            codes.push(c);
            scales.extend(scale);
        }
        Ok(EncodecFrames {
            codes,
            scales: self.config.normalize.then_some(scales),
        })
    }

    /// One chunk `[B, C, T]` -> codes `[B, n_q, ceil(T / hop)]` and, when normalising, the scale.
    fn encode_chunk(&self, x: &Tensor, n_q: usize) -> Result<(Tensor, Option<Tensor>)> {
        let (x, scale) = if self.config.normalize {
            // The mean square in f64: a plain f32 sum over a second of audio is much less
            // accurate than torch's pairwise one.
            let channels = x.dim(1)? as f64;
            let mono = (x.sum_keepdim(1)? / channels)?;
            let rms = mono.to_dtype(DType::F64)?.sqr()?.mean_keepdim(2)?;
            let scale = (rms.to_dtype(DType::F32)?.sqrt()? + 1e-8)?;
            (x.broadcast_div(&scale)?, Some(scale.flatten_all()?))
        } else {
            (x.clone(), None)
        };
        let latent = self.encoder.forward(&x)?;
        Ok((self.quantizer.encode_n(&latent, n_q)?, scale))
    }

    /// Codes (as [`Self::encode`] returns them) -> audio `[B, C, T]`, chunks overlap-added as
    /// the reference does; `T` covers whole frames (trim to the input length yourself).
    pub fn decode(&self, frames: &EncodecFrames) -> Result<Tensor> {
        self.decode_inner(frames).map_err(one_line)
    }

    fn decode_inner(&self, frames: &EncodecFrames) -> Result<Tensor> {
        if frames.codes.is_empty() {
            return Err(Error::invalid("no codes to decode"));
        }
        if let Some(scales) = &frames.scales
            && scales.len() != frames.codes.len()
        {
            return Err(Error::invalid(format!(
                "{} chunks of codes but {} scales",
                frames.codes.len(),
                scales.len()
            )));
        }
        if self.config.normalize && frames.scales.is_none() {
            return Err(Error::invalid(format!(
                "{} normalises its input: decoding needs the scales that came with the codes",
                self.id
            )));
        }
        let mut decoded = Vec::with_capacity(frames.codes.len());
        for (i, codes) in frames.codes.iter().enumerate() {
            let codes = codes.to_device(&self.device)?;
            let latent = self.quantizer.decode(&codes)?;
            let mut audio = self.decoder.forward(&latent)?;
            if let Some(scales) = &frames.scales {
                let scale = scales[i].to_device(&self.device)?.to_dtype(DType::F32)?;
                audio = audio.broadcast_mul(&scale.reshape(((), 1, 1))?)?;
            }
            decoded.push(audio);
        }
        if decoded.len() == 1 {
            return Ok(decoded.pop().expect("one chunk"));
        }
        let stride = self.config.chunk_stride().unwrap_or(1);
        linear_overlap_add(&decoded, stride)
    }

    /// Frames per full chunk (all of them for unchunked models).
    fn chunk_frames(&self) -> Option<usize> {
        self.config
            .chunk_stride()
            .and(self.config.chunk_length())
            .map(|len| len.div_ceil(self.config.hop_length()))
    }
}

/// The reference's `_linear_overlap_add`: each chunk weighted by a triangle peaking at its
/// middle, the sum divided by the summed weights.
fn linear_overlap_add(frames: &[Tensor], stride: usize) -> Result<Tensor> {
    let first_len = frames[0].dim(2)?;
    let last_len = frames[frames.len() - 1].dim(2)?;
    let total = stride * (frames.len() - 1) + last_len;
    let weight = triangle(first_len);
    let (b, c, _) = frames[0].dims3()?;
    let mut out = vec![0f32; b * c * total];
    let mut sum_weight = vec![0f32; total];
    for (i, frame) in frames.iter().enumerate() {
        let offset = i * stride;
        let len = frame.dim(2)?;
        if len > first_len || offset + len > total {
            return Err(Error::invalid("decoded chunks do not fit the overlap-add"));
        }
        let data = frame
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for row in 0..b * c {
            let src = &data[row * len..(row + 1) * len];
            let dst = &mut out[row * total + offset..row * total + offset + len];
            for ((d, s), w) in dst.iter_mut().zip(src).zip(&weight) {
                *d += w * s;
            }
        }
        for (s, w) in sum_weight[offset..offset + len].iter_mut().zip(&weight) {
            *s += w;
        }
    }
    if sum_weight.contains(&0.0) {
        return Err(Error::invalid("overlap-add left samples without weight"));
    }
    for row in out.chunks_mut(total) {
        for (o, w) in row.iter_mut().zip(&sum_weight) {
            *o /= w;
        }
    }
    Ok(Tensor::from_vec(out, (b, c, total), frames[0].device())?)
}

/// `0.5 - |t - 0.5|` for `t = linspace(0, 1, n + 2)[1:-1]`, in float32 as torch computes it
/// (`linspace` fills the first half from the start and the second half from the end).
fn triangle(n: usize) -> Vec<f32> {
    let steps = n + 2;
    let step = 1.0f32 / (steps - 1) as f32;
    let half = steps / 2;
    (1..=n)
        .map(|i| {
            let t = if i < half {
                step * i as f32
            } else {
                1.0 - step * (steps - 1 - i) as f32
            };
            0.5 - (t - 0.5).abs()
        })
        .collect()
}

impl AudioCodec for Encodec {
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
            n_q: self.config.num_quantizers(),
            codebook_size: self.config.codebook_size as u32,
            frame_rate: self.config.sampling_rate as f64 / self.config.hop_length() as f64,
        }]
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: self.config.use_causal_conv
                && self.config.trim_right_ratio == 1.0
                && self.config.chunk_length_s.is_none()
                && !self.config.normalize
                && self.config.norm_type == "weight_norm",
            // Padding depends on the length: only clips of equal length share a batch.
            batch_exact: true,
            decoder_noise: false,
        }
    }

    /// `n_q: None` uses the reference's default, the first of `target_bandwidths`.
    fn encode(&self, audio: &Tensor, opts: &EncodeOptions) -> Result<Vec<Tensor>> {
        if self.config.normalize {
            return Err(Error::invalid(format!(
                "{} normalises each chunk and its codes need their scales; use \
                 Encodec::encode, which returns both",
                self.id
            )));
        }
        let n_q = opts.n_q.unwrap_or_else(|| self.config.default_n_q());
        let frames = Encodec::encode(self, audio, n_q)?;
        Ok(vec![Tensor::cat(&frames.codes, 2)?])
    }

    fn decode(&self, levels: &[Tensor], _opts: &DecodeOptions) -> Result<Tensor> {
        check_levels(self, levels)?;
        if self.config.normalize {
            return Err(Error::invalid(format!(
                "{} needs the per-chunk scales to decode; use Encodec::decode",
                self.id
            )));
        }
        let codes = &levels[0];
        let total = codes.dim(2)?;
        let codes = match self.chunk_frames() {
            Some(per_chunk) => {
                let mut chunks = Vec::new();
                let mut start = 0;
                while start < total {
                    let n = per_chunk.min(total - start);
                    chunks.push(codes.narrow(2, start, n)?);
                    start += n;
                }
                chunks
            }
            None => vec![codes.clone()],
        };
        Encodec::decode(
            self,
            &EncodecFrames {
                codes,
                scales: None,
            },
        )
    }

    /// Stateful causal streaming for the causal models without chunking or normalisation
    /// (encodec_24khz), else the whole-signal fallback.
    fn encode_stream(&self, opts: &EncodeOptions) -> Result<Box<dyn EncodeStream + '_>> {
        if !self.capabilities().streaming {
            return Ok(Box::new(WholeEncodeStream::new(self, opts)));
        }
        let n_q = opts.n_q.unwrap_or_else(|| self.config.default_n_q());
        Ok(Box::new(CausalEncode::new(EncodecStreamingEncoder::new(
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
        Ok(Box::new(CausalDecode::new(EncodecStreamingDecoder::new(
            self,
        )?)))
    }
}
