//! MTP layers against their reference, and speculative decoding against plain decoding.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tessera_core::Result;
use tessera_lm::sampling::softmax;
use tessera_lm::speculative::accept_or_resample;
use tessera_lm::{
    Decoder, Draft, Drafter, GenerateOptions, Mtp, MtpDrafter, MtpLayout, Sampler, SamplingParams,
    generate, generate_speculative,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Decoder {
    Decoder::load(fixture(name), DType::F32, &Device::Cpu).unwrap()
}

fn tensors(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu)
        .unwrap()
}

fn prompt(name: &str) -> Vec<u32> {
    tensors(name)["prompt"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn mtp_logits_match_the_reference_layer() {
    for (name, layout) in [
        ("mimo_7b", MtpLayout::MiMo7B),
        ("mimo_v2_flash", MtpLayout::MiMoV2Flash),
    ] {
        let model = load(name);
        let mtp = Mtp::load(fixture(name), &model).unwrap().unwrap();
        assert_eq!(mtp.layout(), layout);
        assert_eq!(mtp.num_layers(), 1);
        let ids = prompt(name);
        let mut cache = model.new_cache();
        let normed = model
            .final_norm(&model.forward_hidden(&ids, &mut cache).unwrap())
            .unwrap();
        let n = ids.len() - 1;
        let want = &tensors(name)["mtp_logits"];
        // In one go, and in chunks through the MTP layer's own cache.
        for chunk in [n, 5, 1] {
            let mut mcache = mtp.new_cache(0);
            let mut parts = Vec::new();
            let mut at = 0;
            while at < n {
                let len = chunk.min(n - at);
                let h = normed.narrow(0, at, len).unwrap();
                let out = mtp
                    .forward(0, &model, &h, &ids[at + 1..at + 1 + len], &mut mcache)
                    .unwrap();
                parts.push(model.head(&out).unwrap());
                at += len;
            }
            let got = Tensor::cat(&parts, 0).unwrap();
            let err = max_abs_diff(&got, want);
            println!("{name}: MTP logits (chunk {chunk}) max |err| = {err:.3e}");
            assert!(err <= 1e-4, "{name} chunk {chunk}: {err}");
        }
    }
}

#[test]
fn checkpoints_without_mtp_have_none() {
    let model = load("llama");
    assert!(Mtp::load(fixture("llama"), &model).unwrap().is_none());
}

#[test]
fn greedy_speculative_equals_plain_greedy_with_mtp() {
    for name in ["mimo_7b", "mimo_v2_flash"] {
        let model = load(name);
        let mtp = Mtp::load(fixture(name), &model).unwrap().unwrap();
        let ids = prompt(name);
        let opts = GenerateOptions {
            prefill_chunk: 16,
            ..GenerateOptions::new(64)
        };
        let plain = generate(&model, &ids, &opts).unwrap().ids;
        for k in [1, 2, 4] {
            let mut drafter = MtpDrafter::new(&mtp, k);
            let (g, stats) = generate_speculative(&model, &mut drafter, &ids, &opts, k).unwrap();
            assert_eq!(g.ids, plain, "{name} k {k}");
            assert!(stats.rounds > 0 && stats.drafted >= stats.accepted);
            println!(
                "{name} k {k}: {} rounds, mean accepted {:.2} (random MTP weights)",
                stats.rounds,
                stats.mean_accepted()
            );
        }
    }
}

/// Drafts from a known continuation, wrong on purpose now and then: exercises full and
/// partial acceptance, and rollback of ring caches across their wrap-around.
struct OracleDrafter {
    /// Prompt followed by the expected continuation.
    truth: Vec<u32>,
    /// Tokens observed so far (the position of the next token to draft).
    seen: usize,
    round: usize,
    vocab: u32,
}

impl Drafter for OracleDrafter {
    fn observe(&mut self, _: &Decoder, _: Option<&Tensor>, next: &[u32]) -> Result<()> {
        self.seen += next.len();
        Ok(())
    }

    fn draft(&mut self, _: &Decoder, k: usize, _: &mut Sampler, _: &[u32]) -> Result<Vec<Draft>> {
        self.round += 1;
        // `seen` counts tokens after the first prompt token: the next to draft is at seen + 1.
        let start = self.seen + 1;
        let wrong_at = match self.round % 4 {
            0 => Some(0),
            1 => Some(k / 2),
            _ => None,
        };
        Ok((0..k)
            .map(|j| {
                let right = self.truth.get(start + j).copied().unwrap_or(0);
                let token = if wrong_at == Some(j) {
                    (right + 1) % self.vocab
                } else {
                    right
                };
                Draft { token, probs: None }
            })
            .collect())
    }

    fn discard_drafts(&mut self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn greedy_speculative_with_oracle_drafts_rolls_back_every_cache() {
    for name in ["qwen2", "gemma3", "mimo_v2_flash", "llama"] {
        let model = load(name);
        let ids = prompt(name);
        let opts = GenerateOptions {
            prefill_chunk: 13,
            ..GenerateOptions::new(64)
        };
        let plain = generate(&model, &ids, &opts).unwrap().ids;
        let mut truth = ids.clone();
        truth.extend(&plain);
        for k in [1, 3, 6, 12] {
            let mut drafter = OracleDrafter {
                truth: truth.clone(),
                seen: 0,
                round: 0,
                vocab: model.config().vocab_size as u32,
            };
            let (g, stats) = generate_speculative(&model, &mut drafter, &ids, &opts, k).unwrap();
            assert_eq!(g.ids, plain, "{name} k {k}");
            assert!(
                stats.accepted > 0 && stats.accepted < stats.drafted,
                "{name} k {k}"
            );
            assert!(g.ids.len() == 64);
        }
    }
}

#[test]
fn perfect_drafts_are_all_accepted() {
    let model = load("qwen2");
    let ids = prompt("qwen2");
    let opts = GenerateOptions::new(41);
    let plain = generate(&model, &ids, &opts).unwrap().ids;
    let mut truth = ids.clone();
    truth.extend(&plain);
    struct Perfect(Vec<u32>, usize);
    impl Drafter for Perfect {
        fn observe(&mut self, _: &Decoder, _: Option<&Tensor>, next: &[u32]) -> Result<()> {
            self.1 += next.len();
            Ok(())
        }
        fn draft(
            &mut self,
            _: &Decoder,
            k: usize,
            _: &mut Sampler,
            _: &[u32],
        ) -> Result<Vec<Draft>> {
            Ok((0..k)
                .map(|j| Draft {
                    token: self.0[self.1 + 1 + j],
                    probs: None,
                })
                .collect())
        }
        fn discard_drafts(&mut self) -> Result<()> {
            Ok(())
        }
    }
    let (g, stats) = generate_speculative(&model, &mut Perfect(truth, 0), &ids, &opts, 4).unwrap();
    assert_eq!(g.ids, plain);
    assert_eq!(stats.accepted, stats.drafted);
    // 41 tokens: the first from the prefill, then 8 rounds of 4 drafts + 1.
    assert_eq!(stats.rounds, 8);
    assert_eq!(stats.mean_tokens_per_round(), 5.0);
}

/// top-k 1 sampling is deterministic: the sampled path (rejection sampling with one-hot p and
/// q) must then give the greedy output too.
#[test]
fn sampled_speculative_with_top_k_one_equals_greedy() {
    let name = "mimo_7b";
    let model = load(name);
    let mtp = Mtp::load(fixture(name), &model).unwrap().unwrap();
    let ids = prompt(name);
    let plain = generate(&model, &ids, &GenerateOptions::new(32))
        .unwrap()
        .ids;
    let opts = GenerateOptions {
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: Some(1),
            ..SamplingParams::greedy()
        },
        seed: 5,
        ..GenerateOptions::new(32)
    };
    let mut drafter = MtpDrafter::new(&mtp, 3);
    let (g, _) = generate_speculative(&model, &mut drafter, &ids, &opts, 3).unwrap();
    assert_eq!(g.ids, plain);
}

#[test]
fn sampled_speculative_is_reproducible() {
    let name = "mimo_v2_flash";
    let model = load(name);
    let mtp = Mtp::load(fixture(name), &model).unwrap().unwrap();
    let ids = prompt(name);
    let run = |seed| {
        let opts = GenerateOptions {
            sampling: SamplingParams {
                temperature: 1.0,
                top_p: Some(0.9),
                ..SamplingParams::greedy()
            },
            seed,
            ..GenerateOptions::new(24)
        };
        let mut drafter = MtpDrafter::new(&mtp, 2);
        generate_speculative(&model, &mut drafter, &ids, &opts, 2)
            .unwrap()
            .0
            .ids
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

/// Rejection sampling keeps the model's distribution whatever the draft distribution.
#[test]
fn rejection_sampling_preserves_the_target_distribution() {
    let p = [0.1, 0.2, 0.3, 0.4, 0.0];
    let logits: Vec<f32> = p.iter().map(|&x: &f64| (x as f32).ln()).collect();
    let params = SamplingParams {
        temperature: 1.0,
        ..SamplingParams::greedy()
    };
    let target = softmax(&logits);
    for q in [
        Some(vec![0.7, 0.1, 0.1, 0.05, 0.05]),
        Some(vec![0.1, 0.2, 0.3, 0.4, 0.0]),
        Some(vec![0.0, 0.0, 0.0, 0.0, 1.0]),
        None,
    ] {
        let mut sampler = Sampler::new(&params, 11).unwrap();
        let mut drafts = Sampler::new(&params, 12).unwrap();
        let n = 60_000;
        let mut counts = [0usize; 5];
        for _ in 0..n {
            let (token, probs) = match &q {
                Some(q) => (drafts.draw(q).unwrap(), Some(q.clone())),
                // A point-mass drafter always proposing token 2.
                None => (2, None),
            };
            let d = Draft { token, probs };
            let out = accept_or_resample(&mut sampler, &logits, &[], &d)
                .unwrap()
                .unwrap_or(d.token);
            counts[out as usize] += 1;
        }
        for (i, (&c, &pt)) in counts.iter().zip(&target).enumerate() {
            let f = c as f64 / n as f64;
            let sd = (pt * (1.0 - pt) / n as f64).sqrt();
            assert!(
                (f - pt).abs() <= 4.5 * sd + 1e-9,
                "q {q:?}: token {i} frequency {f} vs {pt}"
            );
        }
    }
}
