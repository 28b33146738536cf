//! Encode and decode speed of one codec checkpoint: tessera (through the `AudioCodec` trait, as
//! `tessera_codec::registry::load_dir` loads it) and, where candle-transformers 0.11 has the model
//! and can load the same hub checkpoint, candle-transformers' implementation with the same
//! weights. `benches/compare/codecs_vs_peers.py` runs it beside the Python reference and prints
//! the table with ratios.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2 \
//!   cargo run --release -p tessera-benches --example codec_speed -- DIR [SECONDS] [REPS] [N_Q] [IMPLS]
//! ```
//!
//! DIR: a checkpoint directory in its hub layout (`config.json` plus `model.safetensors` or, for
//! SNAC, `pytorch_model.bin`). SECONDS of audio (default 10), REPS timed repetitions after one
//! warm-up call (default 3), N_Q codebooks to encode with (`all`, the default, or a count: the
//! same count is given to every implementation), IMPLS `tessera,candle` (default) or either one.
//!
//! Every repetition times, in turn, each implementation's encode and then its decode of the codes
//! it has just produced, so that load changes on a shared machine hit all of them alike. Prints
//! one JSON line per (impl, op): median, minimum and all seconds, and the real-time factor (audio
//! seconds per compute second) of the median; an implementation that cannot run this checkpoint
//! prints one line with `"skipped"` and the reason.
//!
//! The input is [`test_signal`], which `codecs_vs_peers.py` builds with the same formula: a
//! chirp plus deterministic hash noise, mono, at the codec's sample rate, batch 1.
//!
//! candle-transformers peers, and what they load:
//! - SNAC (`models::snac`): the hub `pytorch_model.bin` (weight-norm parametrizations) and
//!   `config.json` as they are. It is a speed peer only: it omits the decoder's final tanh and
//!   never applies the local attention of the 32/44.1 kHz models (see docs/codecs/snac.md).
//! - Mimi (`models::mimi`): the hub `model.safetensors` (transformers layout) with its built-in
//!   `Config::v0_1`, which is kyutai/mimi's config; N_Q codebooks.
//! - EnCodec (`models::encodec`): the hub `model.safetensors` (transformers layout) and the
//!   fields of `config.json`, except that padding is `Replicate`: candle's EnCodec refuses
//!   `reflect`, and its own default config makes the same substitution. Its quantizer depth is
//!   set through `target_bandwidths` so that it uses N_Q codebooks.
//! - DAC: skipped. `models::dac` loads the original descript layout (`block.N`, `weight_g`/
//!   `weight_v`), not the transformers layout of the hub repositories, hard-codes the 16/44.1 kHz
//!   strides, and has no quantizer encode.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{encodec as ct_encodec, mimi as ct_mimi, snac as ct_snac};
use serde_json::Value;
use tessera_codec::codec::{AudioCodec, DecodeOptions, EncodeOptions};
use tessera_codec::registry::load_dir;
use tessera_core::{Error, Result};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: codec_speed DIR [SECONDS] [REPS] [N_Q|all] [tessera,candle]";

/// A chirp from 100 Hz rising 400 Hz per second, plus uniform noise from an integer hash of the
/// sample index; `codecs_vs_peers.py` computes the same values (f64, then f32).
fn test_signal(sample_rate: u32, seconds: f64) -> Vec<f32> {
    let n = (sample_rate as f64 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / sample_rate as f64;
            let chirp = 0.4 * (2.0 * std::f64::consts::PI * (100.0 + 200.0 * t) * t).sin();
            let hash = (i as u64).wrapping_mul(2_654_435_761).wrapping_add(12_345) % 65_536;
            let noise = 0.05 * (hash as f64 / 32_768.0 - 1.0);
            (chirp + noise) as f32
        })
        .collect()
}

/// One implementation's encode and decode, each returning nothing but doing the whole work.
trait Runner {
    fn encode(&mut self, audio: &Tensor) -> Result<()>;
    fn decode(&mut self) -> Result<()>;
}

struct Tessera {
    codec: Box<dyn AudioCodec>,
    opts: EncodeOptions,
    codes: Vec<Tensor>,
}

impl Runner for Tessera {
    fn encode(&mut self, audio: &Tensor) -> Result<()> {
        self.codes = self.codec.encode(audio, &self.opts)?;
        Ok(())
    }

    fn decode(&mut self) -> Result<()> {
        // Default options: SNAC draws fresh decoder noise, as the reference and the real
        // checkpoints do.
        let audio = self.codec.decode(&self.codes, &DecodeOptions::default())?;
        std::hint::black_box(audio);
        Ok(())
    }
}

struct CandleSnac {
    model: ct_snac::Model,
    codes: Vec<Tensor>,
}

impl Runner for CandleSnac {
    fn encode(&mut self, audio: &Tensor) -> Result<()> {
        self.codes = self.model.encode(audio)?;
        Ok(())
    }

    fn decode(&mut self) -> Result<()> {
        let refs: Vec<&Tensor> = self.codes.iter().collect();
        std::hint::black_box(self.model.decode(&refs)?);
        Ok(())
    }
}

struct CandleMimi {
    model: ct_mimi::Model,
    codes: Option<Tensor>,
}

impl Runner for CandleMimi {
    fn encode(&mut self, audio: &Tensor) -> Result<()> {
        self.model.reset_state();
        self.codes = Some(self.model.encode(audio)?);
        Ok(())
    }

    fn decode(&mut self) -> Result<()> {
        self.model.reset_state();
        let codes = self
            .codes
            .as_ref()
            .ok_or_else(|| Error::invalid("decode before encode"))?;
        std::hint::black_box(self.model.decode(codes)?);
        Ok(())
    }
}

struct CandleEncodec {
    model: ct_encodec::Model,
    codes: Option<Tensor>,
}

impl Runner for CandleEncodec {
    fn encode(&mut self, audio: &Tensor) -> Result<()> {
        self.codes = Some(self.model.encode(audio)?);
        Ok(())
    }

    fn decode(&mut self) -> Result<()> {
        let codes = self
            .codes
            .as_ref()
            .ok_or_else(|| Error::invalid("decode before encode"))?;
        std::hint::black_box(self.model.decode(codes)?);
        Ok(())
    }
}

fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(&path, e))
}

fn safetensors_vb(dir: &Path) -> Result<VarBuilder<'static>> {
    let weights = dir.join("model.safetensors");
    // SAFETY: the file is not modified while mapped (a benchmark's own scratch checkpoint).
    Ok(unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? })
}

/// candle-transformers' implementation of the checkpoint's model, or why there is none.
fn candle_peer(
    dir: &Path,
    family: &str,
    n_q: Option<usize>,
) -> Result<std::result::Result<Box<dyn Runner>, String>> {
    let config = read_config(dir)?;
    Ok(match family {
        "snac" => {
            let cfg: ct_snac::Config = serde_json::from_value(config)
                .map_err(|e| Error::invalid(format!("SNAC config for candle: {e}")))?;
            if n_q.is_some() {
                return Ok(Err("candle's SNAC always encodes every codebook".into()));
            }
            let vb = VarBuilder::from_pth(dir.join("pytorch_model.bin"), DType::F32, &Device::Cpu)?;
            let model = ct_snac::Model::new(&cfg, vb)?;
            Ok(Box::new(CandleSnac {
                model,
                codes: Vec::new(),
            }))
        }
        "mimi" => {
            let cfg = ct_mimi::Config::v0_1(n_q);
            let model = ct_mimi::Model::new(cfg, safetensors_vb(dir)?)?;
            Ok(Box::new(CandleMimi { model, codes: None }))
        }
        "encodec" => {
            let cfg = candle_encodec_config(&config, n_q)?;
            let model = ct_encodec::Model::new(&cfg, safetensors_vb(dir)?)?;
            Ok(Box::new(CandleEncodec { model, codes: None }))
        }
        "dac" => Err(
            "candle-transformers' DAC loads the original descript layout (block.N, \
                      weight_g/weight_v), not the hub's transformers layout, and has no encode"
                .into(),
        ),
        other => Err(format!("no candle-transformers model for family {other}")),
    })
}

/// candle's EnCodec config from the transformers `config.json`: the same fields, with the enums
/// spelled as candle spells them, replicate padding (candle has no reflect), and the bandwidth
/// list cut so that its last entry (which sets candle's quantizer depth) gives `n_q` codebooks.
fn candle_encodec_config(config: &Value, n_q: Option<usize>) -> Result<ct_encodec::Config> {
    let d = ct_encodec::Config::default();
    let uint = |k: &str, default: usize| {
        config
            .get(k)
            .and_then(Value::as_u64)
            .map_or(default, |v| v as usize)
    };
    let uints = |k: &str, default: &[usize]| -> Vec<usize> {
        config
            .get(k)
            .and_then(Value::as_array)
            .map_or(default.to_vec(), |a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|v| v as usize)
                    .collect()
            })
    };
    let bool_of =
        |k: &str, default: bool| config.get(k).and_then(Value::as_bool).unwrap_or(default);
    let mut cfg = ct_encodec::Config {
        target_bandwidths: config
            .get("target_bandwidths")
            .and_then(Value::as_array)
            .map_or(d.target_bandwidths.clone(), |a| {
                a.iter().filter_map(Value::as_f64).collect()
            }),
        sampling_rate: uint("sampling_rate", d.sampling_rate),
        audio_channels: uint("audio_channels", d.audio_channels),
        normalize: bool_of("normalize", d.normalize),
        chunk_length_s: config
            .get("chunk_length_s")
            .and_then(Value::as_u64)
            .map(|v| v as usize),
        overlap: config
            .get("overlap")
            .and_then(Value::as_u64)
            .map(|v| v as usize),
        hidden_size: uint("hidden_size", d.hidden_size),
        num_filters: uint("num_filters", d.num_filters),
        num_residual_layers: uint("num_residual_layers", d.num_residual_layers),
        upsampling_ratios: uints("upsampling_ratios", &d.upsampling_ratios),
        norm_type: match config.get("norm_type").and_then(Value::as_str) {
            Some("time_group_norm") => ct_encodec::NormType::TimeGroupNorm,
            Some("weight_norm") | None => ct_encodec::NormType::WeightNorm,
            Some(_) => ct_encodec::NormType::None,
        },
        kernel_size: uint("kernel_size", d.kernel_size),
        last_kernel_size: uint("last_kernel_size", d.last_kernel_size),
        residual_kernel_size: uint("residual_kernel_size", d.residual_kernel_size),
        dilation_growth_rate: uint("dilation_growth_rate", d.dilation_growth_rate),
        use_causal_conv: bool_of("use_causal_conv", d.use_causal_conv),
        pad_mode: ct_encodec::PadMode::Replicate,
        compress: uint("compress", d.compress),
        num_lstm_layers: uint("num_lstm_layers", d.num_lstm_layers),
        trim_right_ratio: config
            .get("trim_right_ratio")
            .and_then(Value::as_f64)
            .unwrap_or(d.trim_right_ratio),
        codebook_size: uint("codebook_size", d.codebook_size),
        codebook_dim: config
            .get("codebook_dim")
            .and_then(Value::as_u64)
            .map(|v| v as usize),
        use_conv_shortcut: bool_of("use_conv_shortcut", d.use_conv_shortcut),
    };
    if let Some(n_q) = n_q {
        let hop: usize = cfg.upsampling_ratios.iter().product();
        let frame_rate = cfg.sampling_rate.div_ceil(hop);
        let bits = (cfg.codebook_size as f64).log2();
        let kbps = n_q as f64 * bits * frame_rate as f64 / 1000.0;
        cfg.target_bandwidths.retain(|&b| b <= kbps + 1e-9);
        if cfg.target_bandwidths.last() != Some(&kbps) {
            return Err(Error::invalid(format!(
                "{n_q} codebooks ({kbps} kbps) is not one of this EnCodec's bandwidths"
            )));
        }
    }
    Ok(cfg)
}

fn family_of(dir: &Path) -> Result<String> {
    let config = read_config(dir)?;
    let family = tessera_codec::registry::Family::detect(&config)
        .ok_or_else(|| Error::invalid(format!("{}: not a codec config", dir.display())))?;
    Ok(family.name().to_string())
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn main() -> Result<()> {
    tessera_benches::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).ok_or_else(|| Error::invalid(USAGE))?);
    let seconds: f64 = args.get(2).map_or(Ok(10.0), |s| {
        s.parse()
            .map_err(|_| Error::invalid(format!("'{s}' is not a duration; {USAGE}")))
    })?;
    let reps: Option<usize> = match args.get(3).map(String::as_str) {
        None => Some(3),
        Some("stdin") => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| Error::invalid(format!("'{s}' is not a count; {USAGE}")))?,
        ),
    };
    let n_q: Option<usize> = match args.get(4).map(String::as_str) {
        None | Some("all") => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| Error::invalid(format!("'{s}' is not a count; {USAGE}")))?,
        ),
    };
    let impls: Vec<String> = args
        .get(5)
        .map_or("tessera,candle", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();

    let family = family_of(dir)?;
    let mut codec = Some(load_dir(dir, &Device::Cpu)?);
    let sample_rate = codec.as_ref().map_or(0, |c| c.sample_rate());
    let samples = test_signal(sample_rate, seconds);
    let audio = Tensor::from_vec(samples.clone(), (1, 1, samples.len()), &Device::Cpu)?;
    let threads = candle_core::utils::get_num_threads();

    let mut runners: Named = Vec::new();
    for name in &impls {
        match name.as_str() {
            "tessera" => runners.push((
                name.clone(),
                Box::new(Tessera {
                    codec: match codec.take() {
                        Some(c) => c,
                        None => load_dir(dir, &Device::Cpu)?,
                    },
                    opts: EncodeOptions { n_q },
                    codes: Vec::new(),
                }),
            )),
            "candle" => match candle_peer(dir, &family, n_q)? {
                Ok(r) => runners.push((name.clone(), r)),
                Err(why) => println!(
                    "{{\"impl\": \"candle\", \"family\": \"{family}\", \"skipped\": {}}}",
                    Value::String(why)
                ),
            },
            other => return Err(Error::invalid(format!("unknown impl '{other}'; {USAGE}"))),
        }
    }

    // Warm-up: one encode and decode each (allocator, lazily built tables).
    for (_, r) in runners.iter_mut() {
        r.encode(&audio)?;
        r.decode()?;
    }
    let Some(reps) = reps else {
        // Served mode: one repetition per input line, each reported on its own.
        println!("{{\"ready\": true}}");
        for line in std::io::stdin().lines() {
            let line = line.map_err(|e| Error::invalid(format!("stdin: {e}")))?;
            if line.trim() == "quit" {
                break;
            }
            let times = repeat(&mut runners, &audio, 1)?;
            report(&runners, &times, &family, threads, seconds);
            println!("{{\"done\": true}}");
        }
        return Ok(());
    };
    let times = repeat(&mut runners, &audio, reps)?;
    report(&runners, &times, &family, threads, seconds);
    Ok(())
}

type Named = Vec<(String, Box<dyn Runner>)>;

/// Seconds of each repetition's encode and decode, per runner; the runners take turns.
fn repeat(runners: &mut Named, audio: &Tensor, reps: usize) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let mut times = vec![(Vec::new(), Vec::new()); runners.len()];
    for _ in 0..reps {
        for ((_, r), (enc, dec)) in runners.iter_mut().zip(times.iter_mut()) {
            let t = Instant::now();
            r.encode(audio)?;
            enc.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            r.decode()?;
            dec.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

fn report(
    runners: &Named,
    times: &[(Vec<f64>, Vec<f64>)],
    family: &str,
    threads: usize,
    seconds: f64,
) {
    for ((name, _), (enc, dec)) in runners.iter().zip(times.iter()) {
        for (op, ts) in [("encode", enc), ("decode", dec)] {
            let med = median(ts);
            let min = ts.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{{\"impl\": \"{name}\", \"family\": \"{family}\", \"op\": \"{op}\", \
                 \"threads\": {threads}, \"audio_s\": {seconds}, \"median_s\": {med:.4}, \
                 \"min_s\": {min:.4}, \"rtf\": {:.3}, \"times\": {ts:?}}}",
                seconds / med
            );
        }
    }
}
