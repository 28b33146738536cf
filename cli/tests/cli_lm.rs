//! `tessera lm generate|score` through the real binary, with the tiny decoder checkpoints of
//! the transformers fixtures (lm/tests/fixtures, scripts/reference/lm_fixtures.py) as models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use serde_json::Value;
use tessera_lm::{DecoderConfig, TextTokenizer};

const FAMILIES: [&str; 6] = [
    "llama",
    "qwen2",
    "qwen3",
    "gemma3",
    "mimo_v2_flash",
    "mimo_7b",
];

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run tessera")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lm/tests/fixtures")
        .join(name)
}

fn dir(name: &str) -> String {
    fixture(name).display().to_string()
}

struct Expected {
    prompt: Vec<u32>,
    logits: Tensor,
    greedy: Vec<u32>,
}

fn expected(name: &str) -> Expected {
    let t =
        candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu)
            .unwrap();
    let ids = |k: &str| -> Vec<u32> {
        t[k].to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    Expected {
        prompt: ids("prompt"),
        logits: t["logits"].clone(),
        greedy: ids("greedy"),
    }
}

fn id_list(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    serde_json::from_str(out.trim()).expect("a JSON object")
}

fn ids_of(v: &Value) -> Vec<u32> {
    v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn config(name: &str) -> DecoderConfig {
    DecoderConfig::from_file(fixture(name).join("config.json")).unwrap()
}

/// A failure: the given exit status and exactly one `error: …` line on stderr.
fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    let first = err.lines().next().unwrap_or("");
    assert!(first.starts_with("error: "), "{err}");
    for n in needles {
        assert!(first.contains(n), "{n:?} missing from {first:?}");
    }
    assert!(stdout(o).is_empty(), "nothing on stdout: {}", stdout(o));
}

fn generate_json(name: &str, prompt: &[u32], extra: &[&str]) -> Value {
    let (d, p) = (dir(name), id_list(prompt));
    let mut args = vec![
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt-ids",
        &p,
        "--ignore-eos",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&tessera(&args))
}

#[test]
fn greedy_generation_equals_transformers() {
    for name in FAMILIES {
        let e = expected(name);
        let n = e.greedy.len().to_string();
        let v = generate_json(name, &e.prompt, &["--max-new-tokens", &n]);
        assert_eq!(ids_of(&v), e.greedy, "{name}");
        assert_eq!(v["finish"], "length");
        assert_eq!(v["prompt_tokens"].as_u64(), Some(e.prompt.len() as u64));
        for key in [
            "tokens_per_s",
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
        ] {
            assert!(v[key].as_f64().unwrap() > 0.0, "{name}: {key}");
        }
        assert!(v.get("text").is_none(), "no tokenizer.json, no text");
        assert!(v.get("mean_accepted").is_none());

        // The cache holds prompt + generated - 1 positions; the all-global figure counts every
        // layer at that length.
        let cfg = config(name);
        let positions = e.prompt.len() + e.greedy.len() - 1;
        assert_eq!(v["kv_cache_positions"].as_u64(), Some(positions as u64));
        let all_global = cfg.all_global().kv_cache_bytes(positions, 4);
        assert_eq!(v["kv_cache_bytes_all_global"].as_u64(), Some(all_global));
        let actual = v["kv_cache_bytes"].as_u64().unwrap();
        if cfg.layers.iter().any(|a| a.window.is_some()) {
            // Window layers keep their window only: exactly the hybrid figure.
            assert_eq!(actual, cfg.kv_cache_bytes(positions, 4), "{name}");
            assert!(actual < all_global, "{name}: {actual} vs {all_global}");
        } else {
            assert_eq!(actual, all_global, "{name}: sized exactly, no slack");
        }
    }
}

#[test]
fn speculative_greedy_equals_plain_greedy() {
    for name in ["mimo_7b", "mimo_v2_flash"] {
        let e = expected(name);
        let n = e.greedy.len().to_string();
        for k in ["1", "3", "5"] {
            let v = generate_json(
                name,
                &e.prompt,
                &["--max-new-tokens", &n, "--speculative", "mtp", "--draft", k],
            );
            assert_eq!(ids_of(&v), e.greedy, "{name} draft {k}");
            let spec = &v["speculative"];
            assert_eq!(spec["method"], "mtp");
            assert_eq!(spec["draft"].as_u64(), k.parse().ok());
            let rounds = spec["rounds"].as_u64().unwrap();
            let accepted = spec["accepted"].as_u64().unwrap();
            assert!(rounds > 0);
            // Each pass emits its accepted drafts and one token of the model's own.
            assert_eq!(rounds + accepted + 1, e.greedy.len() as u64, "{name}");
            let mean = v["mean_accepted"].as_f64().unwrap();
            assert!((mean - accepted as f64 / rounds as f64).abs() < 1e-12);
        }
    }
}

#[test]
fn sampling_repeats_with_a_seed() {
    let e = expected("qwen3");
    let run = |seed: &str| {
        ids_of(&generate_json(
            "qwen3",
            &e.prompt,
            &[
                "--max-new-tokens",
                "24",
                "--temperature",
                "1.3",
                "--top-k",
                "40",
                "--top-p",
                "0.95",
                "--min-p",
                "0.01",
                "--repetition-penalty",
                "1.1",
                "--seed",
                seed,
            ],
        ))
    };
    let a = run("7");
    assert_eq!(a.len(), 24);
    assert_eq!(a, run("7"));
    assert_ne!(
        a,
        e.greedy[..24],
        "a hot temperature leaves the greedy path"
    );
    let seeds: Vec<Vec<u32>> = ["1", "2", "3"].iter().map(|s| run(s)).collect();
    assert!(
        seeds.iter().any(|s| *s != a),
        "other seeds draw other tokens"
    );

    // Sampling options alone imply temperature 1; top-k 1 is then greedy.
    let v = generate_json(
        "qwen3",
        &e.prompt,
        &["--max-new-tokens", "16", "--top-k", "1", "--seed", "3"],
    );
    assert_eq!(ids_of(&v), e.greedy[..16]);
    assert_eq!(v["seed"].as_u64(), Some(3));
}

#[test]
fn stops_at_end_of_sequence_unless_told() {
    // The fixtures' greedy paths never meet their EOS id: declare the tenth greedy token the
    // end of sequence, and the run stops at its first occurrence, keeping it.
    let e = expected("llama");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("llama").join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("llama").join("config.json")).unwrap(),
    )
    .unwrap();
    let eos = e.greedy[9];
    cfg["eos_token_id"] = serde_json::json!([eos, 255]);
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let at = e.greedy.iter().position(|&t| t == eos).unwrap();
    let (d, p) = (tmp.path().display().to_string(), id_list(&e.prompt));
    let run = |extra: &[&str]| {
        let mut args = vec!["lm", "generate", "--model", &d, "--prompt-ids", &p];
        args.extend_from_slice(&["--max-new-tokens", "64", "--json"]);
        args.extend_from_slice(extra);
        json(&tessera(&args))
    };
    let v = run(&[]);
    assert_eq!(ids_of(&v), e.greedy[..=at]);
    assert_eq!(v["finish"], "stop");
    assert_eq!(v["stop_token"].as_u64(), Some(eos as u64));
    let v = run(&["--ignore-eos"]);
    assert_eq!(ids_of(&v), e.greedy);
    assert_eq!(v["finish"], "length");
}

#[test]
fn text_prompt_and_output_with_a_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("llama").join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::copy(
        fixture("tokenizer").join("tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let d = tmp.path().display().to_string();
    let tok = TextTokenizer::from_checkpoint_dir(tmp.path()).unwrap();
    let text = "a cat";
    let prompt = tok.encode(text, true).unwrap();
    assert!(
        prompt.iter().all(|&t| t < 256),
        "the text fits the tiny vocabulary"
    );

    let v = json(&tessera(&[
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt",
        text,
        "--max-new-tokens",
        "12",
        "--ignore-eos",
        "--json",
    ]));
    assert_eq!(v["prompt_tokens"].as_u64(), Some(prompt.len() as u64));
    let ids = ids_of(&v);
    assert_eq!(
        v["text"].as_str(),
        Some(tok.decode(&ids, true).unwrap()).as_deref()
    );
    // The same tokens from the ids the tokenizer makes.
    let from_ids = generate_json("llama", &prompt, &["--max-new-tokens", "12"]);
    assert_eq!(ids_of(&from_ids), ids);

    // Without --json: the text on stdout, the figures on stderr (silenced by -q).
    let o = tessera(&[
        "-q",
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt",
        text,
        "--max-new-tokens",
        "12",
        "--ignore-eos",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).strip_suffix('\n'),
        Some(tok.decode(&ids, true).unwrap()).as_deref()
    );
    assert!(stderr(&o).is_empty());

    // Text whose tokens the model does not have.
    let o = tessera(&["lm", "generate", "--model", &d, "--prompt", "hello world"]);
    assert_fails(&o, 1, &[&d, "outside the model's vocabulary"]);
}

#[test]
fn plain_output_is_the_ids() {
    let e = expected("llama");
    let (d, p) = (dir("llama"), id_list(&e.prompt));
    let o = tessera(&[
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt-ids",
        &p,
        "--max-new-tokens",
        "10",
        "--ignore-eos",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), id_list(&e.greedy[..10]));
    assert!(stderr(&o).contains("tok/s"), "{}", stderr(&o));
}

#[test]
fn score_writes_the_logits_of_every_position() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FAMILIES {
        let e = expected(name);
        let out = tmp.path().join(format!("{name}.safetensors"));
        let (d, p) = (dir(name), id_list(&e.prompt));
        let v = json(&tessera(&[
            "lm",
            "score",
            "--model",
            &d,
            "--prompt-ids",
            &p,
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]));
        assert_eq!(v["positions"].as_u64(), Some(e.prompt.len() as u64));
        let t = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        let logits = &t["logits"];
        assert_eq!(logits.dtype(), candle_core::DType::F32);
        assert_eq!(logits.dims(), e.logits.dims());
        let err = (logits - &e.logits)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err <= 1e-4, "{name}: max error {err}");
        assert_eq!(t["ids"].to_vec1::<u32>().unwrap(), e.prompt);

        // The summary's likelihood is that of the reference logits.
        let rows: Vec<Vec<f32>> = e.logits.to_vec2().unwrap();
        let nll: f64 = rows
            .iter()
            .zip(&e.prompt[1..])
            .map(|(r, &next)| {
                let lse = r.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
                lse - r[next as usize] as f64
            })
            .sum::<f64>()
            / (e.prompt.len() - 1) as f64;
        assert!(
            (v["mean_nll"].as_f64().unwrap() - nll).abs() < 1e-4,
            "{name}"
        );

        // The metadata names what made the file.
        let bytes = std::fs::read(&out).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["format"], "tessera-logits");
        assert_eq!(meta["model"], d);
        assert_eq!(meta["vocab_size"], "256");
        assert_eq!(meta["positions"], e.prompt.len().to_string());
    }
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let d = dir("llama");
    let missing = std::env::temp_dir().join("tessera-no-such-model-dir");
    let missing = missing.display().to_string();
    let o = tessera(&["lm", "generate", "--model", &missing, "--prompt-ids", "1"]);
    assert_fails(&o, 1, &[&missing, "no such checkpoint directory"]);
    let o = tessera(&[
        "lm",
        "score",
        "--model",
        &missing,
        "--prompt-ids",
        "1",
        "-o",
        "/tmp/x",
    ]);
    assert_fails(&o, 1, &[&missing]);

    // Ids that are not numbers are usage errors; ids outside the vocabulary input errors.
    for bad in ["1,two,3", "1,-2", "1.5", ","] {
        let o = tessera(&["lm", "generate", "--model", &d, "--prompt-ids", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    }
    let o = tessera(&["lm", "generate", "--model", &d, "--prompt-ids", "1,256"]);
    assert_fails(&o, 1, &[&d, "256", "outside the model's vocabulary"]);
    let o = tessera(&[
        "lm",
        "score",
        "--model",
        &d,
        "--prompt-ids",
        "4000000000",
        "-o",
        "/tmp/x",
    ]);
    assert_fails(&o, 1, &["outside the model's vocabulary"]);

    // Absurd lengths: beyond any context is a usage error, beyond this model's an input error.
    let o = tessera(&[
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt-ids",
        "1",
        "--max-new-tokens",
        "100000000000",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = tessera(&[
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt-ids",
        "1",
        "--max-new-tokens",
        "1000000",
    ]);
    assert_fails(&o, 1, &[&d, "context of 512"]);

    let o = tessera(&[
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt-ids",
        "1",
        "--speculative",
        "mtp",
    ]);
    assert_fails(&o, 1, &[&d, "no", "multi-token-prediction"]);
    let o = tessera(&["lm", "generate", "--model", &d, "--prompt", "hi"]);
    assert_fails(&o, 1, &[&d, "tokenizer.json"]);
    let o = tessera(&[
        "lm",
        "generate",
        "--model",
        &d,
        "--prompt-ids",
        "1",
        "--top-p",
        "1.5",
    ]);
    assert_fails(&o, 1, &["top-p"]);

    // Usage errors: no prompt, both prompts, --draft without --speculative, unknown method.
    for args in [
        &["lm", "generate", "--model", &d][..],
        &[
            "lm",
            "generate",
            "--model",
            &d,
            "--prompt",
            "a",
            "--prompt-ids",
            "1",
        ],
        &[
            "lm",
            "generate",
            "--model",
            &d,
            "--prompt-ids",
            "1",
            "--draft",
            "2",
        ],
        &[
            "lm",
            "generate",
            "--model",
            &d,
            "--prompt-ids",
            "1",
            "--speculative",
            "eagle",
        ],
        &["lm", "score", "--model", &d, "--prompt-ids", "1"],
    ] {
        let o = tessera(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_lists_the_options() {
    let o = tessera(&["lm", "generate", "--help"]);
    let help = stdout(&o);
    for needle in [
        "--model",
        "--prompt",
        "--prompt-ids",
        "--max-new-tokens",
        "--temperature",
        "--top-k",
        "--top-p",
        "--min-p",
        "--repetition-penalty",
        "--seed",
        "--speculative",
        "--draft",
        "--json",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let o = tessera(&["lm", "score", "--help"]);
    assert!(stdout(&o).contains("--output"));
}
