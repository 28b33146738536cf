//! Prefill and decode speed of a checkpoint on the CPU, as one JSON line.
//!
//! `cargo run -p tessera-lm --release --example lm_speed -- DIR [PROMPT_LEN] [NEW_TOKENS]`
//! (scripts/reference/lm_speed.py writes a ~100M-parameter checkpoint and times transformers on
//! the same prompt, for a side-by-side figure.)

use candle_core::{DType, Device};
use tessera_lm::{Decoder, GenerateOptions, generate};

fn main() -> tessera_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or_else(|| {
        tessera_core::Error::invalid("usage: lm_speed DIR [PROMPT_LEN] [NEW_TOKENS]")
    })?;
    let prompt_len: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(512);
    let new_tokens: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(128);
    let model = Decoder::load(dir, DType::F32, &Device::Cpu)?;
    let vocab = model.config().vocab_size as u32;
    // A fixed pseudo-random prompt (the same one lm_speed.py uses).
    let prompt: Vec<u32> = (0..prompt_len as u64)
        .map(|i| ((i * 2_654_435_761 + 12_345) % (vocab as u64 - 3)) as u32 + 3)
        .collect();
    // One warm-up run, then the measured one.
    generate(
        &model,
        &prompt[..16.min(prompt_len)],
        &GenerateOptions::new(4),
    )?;
    let g = generate(&model, &prompt, &GenerateOptions::new(new_tokens))?;
    println!(
        "{{\"impl\": \"tessera\", \"prompt\": {prompt_len}, \"new\": {}, \"prefill_tok_s\": {:.1}, \"decode_tok_s\": {:.1}, \"kv_cache_bytes\": {}}}",
        g.ids.len(),
        g.prefill_tokens_per_s(),
        g.decode_tokens_per_s(),
        g.kv_cache_bytes
    );
    Ok(())
}
