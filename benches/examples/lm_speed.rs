//! Prefill and greedy-decode speed of a Llama-shaped checkpoint, one JSON line per repetition;
//! `benches/compare/lm_vs_peers.py` runs it beside transformers and prints ratios.
//!
//! `cargo run --release -p tessera-benches --example lm_speed -- IMPL DIR [PROMPT] [NEW] [REPS]`
//!
//! IMPL: `tessera` (the checkpoint as it is), `tessera-hybrid` (the same weights with five
//! sliding-window layers of 128 positions to one global layer) or `candle` (candle-transformers'
//! `llama` or `gemma3`, by the config's `model_type`; a speed peer only). After one warm-up run,
//! each repetition prefills PROMPT tokens in one forward pass and then decodes NEW tokens greedily
//! with the KV cache.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{gemma3 as peer_gemma3, llama as peer};
use tessera_benches::lm::{speed_prompt, with_window_pattern};
use tessera_core::{Checkpoint, Error, Result};
use tessera_lm::{Decoder, DecoderConfig, sampling::argmax};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: lm_speed tessera|tessera-hybrid|candle DIR [PROMPT] [NEW] [REPS]";

/// One repetition's figures: wall-clock and process CPU seconds of each phase.
struct Timing {
    prefill: Clocks,
    decode: Clocks,
    kv_cache_bytes: Option<u64>,
}

#[derive(Clone, Copy)]
struct Clocks {
    wall: f64,
    cpu: f64,
}

/// Starts both clocks; `stop` gives the seconds since.
struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            wall: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    fn stop(&self) -> Clocks {
        Clocks {
            wall: self.wall.elapsed().as_secs_f64(),
            cpu: process_cpu_seconds() - self.cpu,
        }
    }
}

/// User + system CPU time of all threads of this process (Linux `/proc/self/stat`, in clock
/// ticks of 10 ms); 0 where that file is not there. On a loaded machine the CPU seconds of a
/// single-threaded run measure the work done, whatever share of the cores it got.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<()> {
    tessera_benches::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let (which, dir) = match (args.get(1), args.get(2)) {
        (Some(w), Some(d)) => (w.as_str(), d.as_str()),
        _ => return Err(Error::invalid(USAGE)),
    };
    let num = |i: usize, default: usize| -> Result<usize> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| Error::invalid(format!("'{s}' is not a count; {USAGE}")))
        })
    };
    let (prompt_len, new, reps) = (num(3, 512)?, num(4, 128)?, num(5, 1)?);
    let mut run: Runner = match which {
        "tessera" => tessera(dir, false)?,
        "tessera-hybrid" => tessera(dir, true)?,
        "candle" => candle(dir)?,
        other => return Err(Error::invalid(format!("unknown IMPL '{other}'; {USAGE}"))),
    };
    let vocab = read_vocab(dir)?;
    let prompt = speed_prompt(prompt_len, vocab);
    // The warm-up has the timed runs' size, so that the allocator's and gemm's buffers are
    // grown before the clock starts, as they are in a long-lived process (the Python peers are
    // timed in one process, round after round).
    run(&prompt, 4.min(new))?;
    for _ in 0..reps {
        let t = run(&prompt, new)?;
        let kv = t
            .kv_cache_bytes
            .map_or(String::new(), |b| format!(", \"kv_cache_bytes\": {b}"));
        let decoded = new.saturating_sub(1) as f64;
        println!(
            "{{\"impl\": \"{which}\", \"threads\": {}, \"prompt\": {prompt_len}, \"new\": {new}, \
             \"prefill_tok_s\": {:.2}, \"decode_tok_s\": {:.2}, \"prefill_cpu_s\": {:.3}, \
             \"decode_cpu_s\": {:.3}{kv}}}",
            candle_core::utils::get_num_threads(),
            prompt_len as f64 / t.prefill.wall,
            decoded / t.decode.wall.max(1e-12),
            t.prefill.cpu,
            t.decode.cpu,
        );
    }
    Ok(())
}

fn read_vocab(dir: &str) -> Result<usize> {
    let ckpt = Checkpoint::open(dir)?;
    Ok(DecoderConfig::from_file(&ckpt.config)?.vocab_size)
}

type Runner = Box<dyn FnMut(&[u32], usize) -> Result<Timing>>;

fn tessera(dir: &str, hybrid: bool) -> Result<Runner> {
    let ckpt = Checkpoint::open(dir)?;
    let mut cfg = DecoderConfig::from_file(&ckpt.config)?;
    if hybrid {
        cfg = with_window_pattern(cfg, 128, 6);
    }
    let vb = ckpt
        .store(&cfg.key_map())?
        .into_var_builder(DType::F32, &Device::Cpu);
    let model = Decoder::from_var_builder(cfg, vb)?;
    Ok(Box::new(move |prompt, new| {
        // What `generate` does, with a clock between the phases.
        let mut cache = model.new_cache_with(0, prompt.len() + new);
        let clock = Stopwatch::start();
        let mut logits = model.forward_last(prompt, &mut cache)?;
        let prefill = clock.stop();
        let clock = Stopwatch::start();
        for _ in 1..new {
            let next = argmax(&logits.to_vec1::<f32>()?);
            logits = model.forward_last(&[next], &mut cache)?;
        }
        let decode = clock.stop();
        Ok(Timing {
            prefill,
            decode,
            kv_cache_bytes: Some(cache.allocated_bytes()),
        })
    }))
}

fn candle(dir: &str) -> Result<Runner> {
    let ckpt = Checkpoint::open(dir)?;
    let text = std::fs::read_to_string(&ckpt.config).map_err(|e| Error::file(&ckpt.config, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(&ckpt.config, e))?;
    if json["model_type"].as_str() == Some("gemma3_text") {
        return candle_gemma3(dir, json);
    }
    let cfg: peer::LlamaConfig =
        serde_json::from_str(&text).map_err(|e| Error::file(&ckpt.config, e))?;
    let cfg = cfg.into_config(false);
    let weights = Path::new(dir).join("model.safetensors");
    // SAFETY: the file is not modified while mapped (a benchmark's own scratch checkpoint).
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)?
    };
    let model = peer::Llama::load(vb, &cfg)?;
    Ok(Box::new(move |prompt, new| {
        let dev = Device::Cpu;
        let mut cache = peer::Cache::new(true, DType::F32, &cfg, &dev)?;
        let clock = Stopwatch::start();
        let input = Tensor::new(prompt, &dev)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0, &mut cache)?;
        let prefill = clock.stop();
        let clock = Stopwatch::start();
        for pos in prompt.len()..prompt.len() + new.saturating_sub(1) {
            let next = argmax(&logits.squeeze(0)?.to_vec1::<f32>()?);
            logits = model.forward(&Tensor::new(&[[next]], &dev)?, pos, &mut cache)?;
        }
        let decode = clock.stop();
        Ok(Timing {
            prefill,
            decode,
            kv_cache_bytes: None,
        })
    }))
}

/// candle-transformers' Gemma 3 reads the flat config fields of the Hub repositories
/// (`rope_theta`, `rope_local_base_freq`, `sliding_window_pattern`); transformers 5 saves them
/// nested (`rope_parameters`) or as `layer_types`, so they are filled in from there.
fn candle_gemma3(dir: &str, mut json: serde_json::Value) -> Result<Runner> {
    let config_path = Path::new(dir).join("config.json");
    let bad = |what: &str| Error::invalid(format!("{}: {what}", config_path.display()));
    let rope = |kind: &str| json["rope_parameters"][kind]["rope_theta"].as_f64();
    let (global, local) = (rope("full_attention"), rope("sliding_attention"));
    let pattern = json["layer_types"].as_array().and_then(|types| {
        types
            .iter()
            .position(|t| t.as_str() == Some("full_attention"))
            .map(|i| i + 1)
    });
    let obj = json
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object"))?;
    for (key, value) in [
        ("rope_theta", global.map(serde_json::Value::from)),
        ("rope_local_base_freq", local.map(serde_json::Value::from)),
        (
            "sliding_window_pattern",
            pattern.map(serde_json::Value::from),
        ),
    ] {
        if !obj.contains_key(key) {
            obj.insert(key.into(), value.ok_or_else(|| bad(&format!("no {key}")))?);
        }
    }
    let cfg: peer_gemma3::Config = serde_json::from_value(json).map_err(|e| bad(&e.to_string()))?;
    let weights = Path::new(dir).join("model.safetensors");
    // SAFETY: as in `candle`.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)?
    };
    let mut model = peer_gemma3::Model::new(false, &cfg, vb)?;
    Ok(Box::new(move |prompt, new| {
        let dev = Device::Cpu;
        model.clear_kv_cache();
        let clock = Stopwatch::start();
        let input = Tensor::new(prompt, &dev)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0)?;
        let prefill = clock.stop();
        let clock = Stopwatch::start();
        for pos in prompt.len()..prompt.len() + new.saturating_sub(1) {
            let next = argmax(&logits.flatten_all()?.to_vec1::<f32>()?);
            logits = model.forward(&Tensor::new(&[[next]], &dev)?, pos)?;
        }
        let decode = clock.stop();
        Ok(Timing {
            prefill,
            decode,
            kv_cache_bytes: None,
        })
    }))
}
