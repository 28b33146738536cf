//! `tessera codecs`, `encode` and `decode` through the real binary, with the tiny SNAC
//! checkpoint of the reference fixtures as a local codec directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use serde_json::Value;
use tessera_codec::audio::{ChannelMode, load_audio, read_audio};
use tessera_codec::codec::{EncodeOptions, encode_to_codes};
use tessera_codec::registry;
use tessera_core::Codes;

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        // Never touch the network or a real cache from tests.
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("tessera-test-empty-hf-home"),
        )
        .output()
        .expect("run tessera")
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn snac_dir() -> String {
    repo("codec/tests/fixtures/snac/tiny_24k")
        .display()
        .to_string()
}

fn audio(name: &str) -> String {
    repo("codec/tests/fixtures/audio")
        .join(name)
        .display()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("one JSON object")
}

#[test]
fn codecs_lists_every_registered_id() {
    let o = tessera(&["codecs", "--json"]);
    assert!(o.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), registry::entries().len());
    for (v, e) in lines.iter().zip(registry::entries()) {
        assert_eq!(v["id"], e.id);
        assert_eq!(
            v["sample_rate"].as_u64(),
            Some(e.facts().sample_rate as u64)
        );
        assert!(v["bitrate_bps"].as_f64().unwrap() > 0.0);
        assert!(!v["levels"].as_array().unwrap().is_empty());
    }
    let o = tessera(&["codecs"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("snac_24khz") && text.contains("hubertsiuzdak/snac_24khz"),
        "{text}"
    );
}

#[test]
fn encode_then_decode_round_trip_matches_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let codes_path = tmp.path().join("c.safetensors");
    let wav_path = tmp.path().join("out.wav");
    let input = audio("wav_s16.wav"); // 16 kHz stereo, 0.25 s; the tiny codec runs at 8 kHz mono
    let o = tessera(&[
        "encode",
        &input,
        "--codec",
        &snac_dir(),
        "-o",
        codes_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = json(&o);
    assert_eq!(summary["codec"], "tiny_24k");
    assert_eq!(summary["n_samples"].as_u64(), Some(2000));
    assert!(summary["real_time_factor"].as_f64().unwrap() > 0.0);

    // The file holds exactly what the library computes on the same audio.
    let codes = Codes::load(&codes_path).unwrap();
    let codec = registry::load_dir(Path::new(&snac_dir()), &Device::Cpu).unwrap();
    let buf = load_audio(&input, 8000, ChannelMode::Mono).unwrap();
    let clip =
        Tensor::from_vec(buf.channels()[0].clone(), (1, buf.n_frames()), &Device::Cpu).unwrap();
    let want = encode_to_codes(codec.as_ref(), &clip, 8000, &EncodeOptions::default()).unwrap();
    assert_eq!(codes.shapes(), want.shapes());
    for (a, b) in codes.levels().iter().zip(want.levels()) {
        assert_eq!(a.to_vec2::<u32>().unwrap(), b.to_vec2::<u32>().unwrap());
    }
    assert_eq!(codes.meta().n_samples, Some(2000));
    assert_eq!(codes.meta().sample_rate, Some(8000));

    // The tokenizer id is the directory name, not a registry id: decode needs --codec.
    let o = tessera(&[
        "decode",
        codes_path.to_str().unwrap(),
        "-o",
        wav_path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--codec"), "{}", stderr(&o));

    let o = tessera(&[
        "decode",
        codes_path.to_str().unwrap(),
        "-o",
        wav_path.to_str().unwrap(),
        "--codec",
        &snac_dir(),
        "--seed",
        "7",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = read_audio(&wav_path, ChannelMode::Keep).unwrap();
    assert_eq!(out.sample_rate(), 8000);
    assert_eq!(out.n_channels(), 1);
    assert_eq!(out.n_frames(), 2000, "trimmed to the original length");
    assert_eq!(json(&o)["n_samples"].as_u64(), Some(2000));

    // Same seed, same audio; --no-noise is deterministic too and differs from the noisy decode.
    let again = tmp.path().join("again.wav");
    let quiet = tmp.path().join("quiet.wav");
    let o = tessera(&[
        "decode",
        codes_path.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
        "--codec",
        &snac_dir(),
        "--seed",
        "7",
    ]);
    assert!(o.status.success());
    let o = tessera(&[
        "decode",
        codes_path.to_str().unwrap(),
        "-o",
        quiet.to_str().unwrap(),
        "--codec",
        &snac_dir(),
        "--no-noise",
        "--pcm16",
    ]);
    assert!(o.status.success());
    let a = read_audio(&again, ChannelMode::Keep).unwrap();
    let q = read_audio(&quiet, ChannelMode::Keep).unwrap();
    assert_eq!(a.channels(), out.channels());
    assert_ne!(q.channels(), out.channels());
    assert_eq!(q.n_frames(), 2000);
}

#[test]
fn failures_are_one_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.safetensors");
    let out_s = out.to_str().unwrap();

    let o = tessera(&[
        "encode",
        &audio("wav_s16.wav"),
        "--codec",
        "nope_codec",
        "-o",
        out_s,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("error: ") && e.contains("snac_24khz"), "{e}");

    // A registered id whose weights are not cached, offline: says what to download.
    let o = tessera(&[
        "encode",
        &audio("wav_s16.wav"),
        "--codec",
        "snac_24khz",
        "-o",
        out_s,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("hubertsiuzdak/snac_24khz") && e.contains("huggingface-cli download"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    for (name, reason) in [("broken_empty.wav", "empty"), ("broken_nan.wav", "NaN")] {
        let o = tessera(&["encode", &audio(name), "--codec", &snac_dir(), "-o", out_s]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let e = stderr(&o);
        let line = e
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default();
        assert!(
            line.contains(&audio(name)) && line.contains(reason),
            "{name}: {e}"
        );
    }
    assert!(!out.exists(), "no output is written for a failed input");

    // Decoding something that is not a codes file.
    let o = tessera(&[
        "decode",
        &audio("wav_s16.wav"),
        "-o",
        tmp.path().join("y.wav").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a codes file"), "{}", stderr(&o));

    // --n-q beyond what SNAC has.
    let o = tessera(&[
        "encode",
        &audio("wav_s16.wav"),
        "--codec",
        &snac_dir(),
        "-o",
        out_s,
        "--n-q",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("n_q"), "{}", stderr(&o));
}

/// One tiny checkpoint of each family, as a local codec directory.
const FAMILY_FIXTURES: &[&str] = &[
    "snac/tiny_24k",
    "snac/tiny_attn",
    "mimi/tiny",
    "encodec/tiny_24k",
    "dac/tiny_odd",
];

/// A stereo WAV (f32) at `rate` of tones and noise: `n` frames.
fn write_test_wav(path: &Path, rate: u32, n: usize) {
    use tessera_codec::audio::{WavFormat, WavWriter};
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut channels = vec![Vec::with_capacity(n), Vec::with_capacity(n)];
    for i in 0..n {
        let t = i as f32 / rate as f32;
        for (c, ch) in channels.iter_mut().enumerate() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let f = 150.0 + 70.0 * c as f32 + 40.0 * (t * 0.5).sin();
            ch.push(0.35 * (std::f32::consts::TAU * f * t).sin() + 0.15 * noise);
        }
    }
    let mut w = WavWriter::create(path, rate, 2, WavFormat::F32).unwrap();
    w.write_chunk(&channels).unwrap();
    w.finalize().unwrap();
}

/// Frames long enough for several reader chunks (16384 frames), several of the CLI's 4 s pushes
/// to the encode stream and several windows of the windowed codecs (DAC: 256 frames, SNAC: 512
/// latent frames) at the file's rate `rate`.
fn multi_chunk_len(codec: &dyn tessera_codec::codec::AudioCodec, rate: u32) -> usize {
    let finest = codec
        .levels()
        .iter()
        .map(|l| l.frame_rate)
        .fold(0.0, f64::max);
    let window_s = 512.0 / finest;
    let seconds = (2.3 * window_s).max(9.3);
    ((seconds * rate as f64) as usize).max(3 * 16384 + 123)
}

/// A file longer than one reader chunk and one encode window encodes, through the chunked
/// reader, the resampler and the codec's stream, to exactly the codes of whole-file encoding;
/// decoding streams to the WAV exactly the whole-file decode, trimmed to the original length.
#[test]
fn long_files_stream_to_exactly_the_whole_file_results() {
    use tessera_codec::codec::{DecodeOptions, Noise, decode_codes};
    let tmp = tempfile::tempdir().unwrap();
    for name in FAMILY_FIXTURES {
        let dir = repo("codec/tests/fixtures").join(name);
        let dir_s = dir.to_str().unwrap();
        let codec = registry::load_dir(&dir, &Device::Cpu).unwrap();
        let sr = codec.sample_rate();
        // 3/2 of the codec's rate: the resampler runs chunk by chunk too.
        let file_rate = sr * 3 / 2;
        let n = multi_chunk_len(codec.as_ref(), file_rate);
        let wav = tmp.path().join(format!("{}.wav", name.replace('/', "_")));
        write_test_wav(&wav, file_rate, n);
        let codes_path = tmp.path().join("codes.safetensors");
        let o = tessera(&[
            "encode",
            wav.to_str().unwrap(),
            "--codec",
            dir_s,
            "-o",
            codes_path.to_str().unwrap(),
            "--json",
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));

        let mode = if codec.channels() == 1 {
            ChannelMode::Mono
        } else {
            ChannelMode::Keep
        };
        let buf = load_audio(&wav, sr, mode).unwrap();
        let clip = Tensor::from_vec(
            buf.channels().concat(),
            (buf.n_channels(), buf.n_frames()),
            &Device::Cpu,
        )
        .unwrap();
        let want = encode_to_codes(codec.as_ref(), &clip, sr, &EncodeOptions::default()).unwrap();
        let got = Codes::load(&codes_path).unwrap();
        eprintln!(
            "{name}: {n} frames at {file_rate} Hz -> codes {:?}",
            got.shapes()
        );
        assert_eq!(json(&o)["n_samples"].as_u64(), Some(buf.n_frames() as u64));
        assert_eq!(got.shapes(), want.shapes(), "{name}");
        assert_eq!(got.meta(), want.meta(), "{name}");
        for (k, (a, b)) in got.levels().iter().zip(want.levels()).enumerate() {
            assert_eq!(
                a.to_vec2::<u32>().unwrap(),
                b.to_vec2::<u32>().unwrap(),
                "{name} level {k}"
            );
        }

        let noises: &[(&[&str], Noise)] = if codec.capabilities().decoder_noise {
            &[
                (&["--no-noise"], Noise::Off),
                (&["--seed", "9"], Noise::Seeded(9)),
            ]
        } else {
            &[(&[], Noise::Off)]
        };
        for (flags, noise) in noises {
            let out_wav = tmp.path().join("out.wav");
            let mut a = vec![
                "decode",
                codes_path.to_str().unwrap(),
                "-o",
                out_wav.to_str().unwrap(),
                "--codec",
                dir_s,
            ];
            a.extend_from_slice(flags);
            let o = tessera(&a);
            assert!(o.status.success(), "{name}: {}", stderr(&o));
            let out = read_audio(&out_wav, ChannelMode::Keep).unwrap();
            let whole = decode_codes(codec.as_ref(), &want, &DecodeOptions { noise: *noise })
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(out.n_frames(), buf.n_frames(), "{name}: trimmed length");
            let err = out
                .channels()
                .iter()
                .zip(&whole)
                .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
                .fold(0f32, f32::max);
            assert!(
                err < 1e-4,
                "{name} {noise:?}: streamed decode differs by {err}"
            );
        }
    }
}
