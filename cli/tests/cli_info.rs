//! `tessera info` and the global flags, through the real binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use serde_json::Value;
use tessera_core::{Codes, CodesMeta};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

fn audio_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../codec/tests/fixtures/audio")
        .join(name)
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect()
}

#[test]
fn version_and_help() {
    let o = tessera(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("tessera {}", env!("CARGO_PKG_VERSION"))
    );
    let o = tessera(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for needle in ["info", "--device", "--threads", "--quiet", "--verbose"] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let o = tessera(&["info", "--help"]);
    assert!(stdout(&o).contains("--json") && stdout(&o).contains("--exact"));
}

/// (file, format, codec, rate, channels, frames if the header states them)
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    u64,
    Option<u64>,
);

#[test]
fn audio_of_every_format_as_json() {
    let cases: &[Expected] = &[
        ("wav_u8.wav", "wave", "pcm_u8", 8000, 2, Some(4000)),
        ("wav_s16.wav", "wave", "pcm_s16le", 16000, 2, Some(4000)),
        ("wav_s24.wav", "wave", "pcm_s24le", 16000, 1, Some(4000)),
        ("wav_s32.wav", "wave", "pcm_s32le", 16000, 1, Some(4000)),
        ("wav_f32.wav", "wave", "pcm_f32le", 8000, 2, Some(2000)),
        ("flac_s16.flac", "flac", "flac", 44100, 2, Some(22050)),
        ("mp3.mp3", "mp3", "mp3", 44100, 2, Some(22050)),
        ("vorbis.ogg", "ogg", "vorbis", 44100, 2, Some(22050)),
        ("aac.m4a", "isomp4", "aac", 44100, 2, Some(23074)),
        ("alac.m4a", "isomp4", "alac", 22050, 2, Some(5513)),
        ("pcm.caf", "caf", "pcm_s16le", 16000, 1, Some(4000)),
        ("aiff_s16.aiff", "aiff", "pcm_s16be", 8000, 1, Some(2000)),
        ("flac.mkv", "matroska", "flac", 16000, 1, None),
    ];
    let paths: Vec<String> = cases.iter().map(|c| audio_fixture(c.0)).collect();
    let mut args = vec!["info", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let o = tessera(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), cases.len());
    for (v, (name, format, codec, sr, ch, frames)) in lines.iter().zip(cases) {
        assert_eq!(v["kind"], "audio", "{name}");
        assert!(v["path"].as_str().unwrap().ends_with(name));
        assert_eq!(v["format"], *format, "{name}");
        assert_eq!(v["codec"], *codec, "{name}");
        assert_eq!(v["sample_rate"].as_u64(), Some(*sr), "{name}");
        assert_eq!(v["channels"].as_u64(), Some(*ch), "{name}");
        assert_eq!(v["frames"].as_u64(), *frames, "{name}");
        if let Some(f) = frames {
            let d = v["duration_s"].as_f64().unwrap();
            assert!((d - *f as f64 / *sr as f64).abs() < 1e-9, "{name}");
        }
    }
}

#[test]
fn exact_counts_frames_the_header_does_not_state() {
    let p = audio_fixture("flac.mkv");
    let o = tessera(&["info", "--json", &p]);
    assert!(json_lines(&o)[0]["frames"].is_null());
    let o = tessera(&["info", "--json", "--exact", &p]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["frames"].as_u64(), Some(4000));
}

#[test]
fn text_output_names_the_fields() {
    let o = tessera(&["info", &audio_fixture("flac_s24.flac")]);
    assert!(o.status.success());
    let text = stdout(&o);
    for needle in [
        "kind         audio",
        "flac (24-bit)",
        "16000 Hz",
        "4000",
        "0.250 s",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn broken_files_fail_one_line_each_and_the_rest_still_print() {
    let broken = [
        ("broken_empty.wav", "empty"),
        ("broken_random.bin", "not a recognised audio file"),
        ("broken_text.wav", "not a recognised audio file"),
        ("broken_rate_zero.wav", "sample rate 0"),
        ("broken_zero_channels.wav", "channel"),
        ("broken_truncated.flac", "truncated"),
        ("opus.webm", "unsupported codec"),
        ("does_not_exist.wav", "no such file"),
    ];
    let good = audio_fixture("wav_s16.wav");
    let mut paths: Vec<String> = vec![good.clone()];
    paths.extend(broken.iter().map(|(n, _)| audio_fixture(n)));
    let mut args = vec!["info", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let o = tessera(&args);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_lines(&o).len(), 1, "the good file is still reported");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), broken.len(), "{err}");
    for ((name, reason), line) in broken.iter().zip(&lines) {
        assert!(
            line.starts_with(&format!("error: {}: ", audio_fixture(name))),
            "{line}"
        );
        assert!(line.contains(reason), "{name}: {line}");
    }
}

#[test]
fn decoding_problems_show_with_exact() {
    for (name, reason) in [
        ("broken_truncated.wav", "truncated"),
        ("broken_nan.wav", "NaN"),
    ] {
        let o = tessera(&["info", "--exact", &audio_fixture(name)]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = stderr(&o);
        assert!(
            err.starts_with("error: ") && err.contains(reason),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

fn write_codes(dir: &Path) -> PathBuf {
    let dev = Device::Cpu;
    let l0 = Tensor::from_vec(
        (0..8u32 * 25).map(|i| i % 2048).collect::<Vec<_>>(),
        (8, 25),
        &dev,
    )
    .unwrap();
    let meta = CodesMeta {
        tokenizer: "mimi".into(),
        tokenizer_version: "test".into(),
        sample_rate: Some(24_000),
        n_samples: Some(48_000),
        image_size: None,
        frame_rates: vec![12.5],
        codebook_sizes: vec![2048],
        extra: BTreeMap::new(),
    };
    let p = dir.join("clip.safetensors");
    Codes::new(vec![l0], meta).unwrap().save(&p).unwrap();
    p
}

#[test]
fn codes_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_codes(dir.path());
    let ps = p.display().to_string();
    let o = tessera(&["info", "--json", &ps]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["kind"], "codes");
    assert_eq!(v["tokenizer"], "mimi");
    assert_eq!(v["levels"], serde_json::json!([[8, 25]]));
    assert_eq!(v["frame_rates"], serde_json::json!([12.5]));
    assert_eq!(v["duration_s"].as_f64(), Some(2.0));
    let o = tessera(&["info", &ps]);
    assert!(
        stdout(&o).contains("8 x 25 (codebooks x frames) at 12.5 Hz"),
        "{}",
        stdout(&o)
    );

    // A truncated codes file fails cleanly.
    let bytes = std::fs::read(&p).unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() - 10]).unwrap();
    let o = tessera(&["info", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("error: {}: not a codes file", bad.display())),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["info"],
        vec!["--device", "tpu", "info", "x.wav"],
        vec!["--threads", "0", "info", "x.wav"],
        vec!["frobnicate"],
        vec!["-q", "-v", "info", "x.wav"],
    ] {
        let o = tessera(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn global_flags_are_accepted_anywhere() {
    let p = audio_fixture("wav_s16.wav");
    for args in [
        vec!["--threads", "2", "-q", "info", &p],
        vec!["info", &p, "--device", "cpu", "-v"],
    ] {
        let o = tessera(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
}
