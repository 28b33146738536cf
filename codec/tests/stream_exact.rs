//! The family-independent streams (`AudioCodec::encode_stream` / `decode_stream`) against
//! whole-signal processing, on every family's tiny fixtures: pieces of random sizes give exactly
//! the whole-signal codes, and audio equal to whole-signal decoding.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use tessera_codec::codec::{AudioCodec, DecodeOptions, EncodeOptions, Noise};
use tessera_codec::registry::load_codec;

/// One checkpoint of each family's fixtures that streams or windows (the EnCodec 48 kHz
/// fixture normalises chunks, which the codes-only interface refuses).
const CHECKPOINTS: &[&str] = &[
    "snac/tiny_24k",
    "snac/tiny_attn",
    "snac/tiny_dense",
    "mimi/tiny",
    "mimi/tiny_gqa",
    "encodec/tiny_24k",
    "encodec/tiny_plain",
    "dac/tiny_even",
    "dac/tiny_odd",
];

fn load(name: &str) -> Box<dyn AudioCodec> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    load_codec(dir.to_str().unwrap(), &Device::Cpu, false).unwrap()
}

/// A reproducible xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Tones and noise, `[C, n]`, at a level that uses many codes.
fn signal(channels: usize, n: usize, sample_rate: u32, seed: u64) -> Tensor {
    let mut rng = Rng(seed | 1);
    let sr = sample_rate as f32;
    let mut v = Vec::with_capacity(channels * n);
    for c in 0..channels {
        let f = 110.0 + 90.0 * c as f32;
        for i in 0..n {
            let t = i as f32 / sr;
            let noise = (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let env = 0.5 + 0.5 * (t * 1.7).sin();
            v.push(0.3 * env * (std::f32::consts::TAU * f * t).sin() + 0.2 * noise);
        }
    }
    Tensor::from_vec(v, (channels, n), &Device::Cpu).unwrap()
}

/// Long enough for two of the windowed families' default windows (DAC: 256 frames, SNAC: 512
/// latent frames, the finest level's) and a partial one.
fn signal_len(codec: &dyn AudioCodec) -> usize {
    let finest = codec
        .levels()
        .iter()
        .map(|l| l.frame_rate)
        .fold(0.0, f64::max);
    let per_frame = codec.sample_rate() as f64 / finest;
    (2.6 * 512.0 * per_frame) as usize + 7
}

fn as_u32(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Encode through the stream in random pieces (empty ones included).
fn stream_encode(codec: &dyn AudioCodec, audio: &Tensor, rng: &mut Rng, max: usize) -> Vec<Tensor> {
    let mut stream = codec.encode_stream(&EncodeOptions::default()).unwrap();
    let n = audio.dims()[1];
    let n_levels = codec.levels().len();
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); n_levels];
    let mut keep = |out: Option<Vec<Tensor>>| {
        for (k, l) in out.into_iter().flatten().enumerate() {
            assert!(l.dims()[1] > 0, "a stream returned an empty level");
            parts[k].push(l);
        }
    };
    let mut at = 0;
    while at < n {
        let len = rng.below(max + 1).min(n - at);
        keep(stream.push(&audio.narrow(1, at, len).unwrap()).unwrap());
        at += len;
    }
    keep(stream.finish().unwrap());
    parts
        .into_iter()
        .map(|p| Tensor::cat(&p, 1).unwrap())
        .collect()
}

/// Decode through the stream in random pieces of level-0 frames (finer levels in step).
fn stream_decode(
    codec: &dyn AudioCodec,
    levels: &[Tensor],
    opts: &DecodeOptions,
    total: Option<usize>,
    rng: &mut Rng,
) -> Tensor {
    let mut stream = codec.decode_stream(opts, total).unwrap();
    let frames0 = levels[0].dims()[1];
    let mut parts = Vec::new();
    let mut at = 0;
    while at < frames0 {
        let n = rng.below(40).min(frames0 - at);
        let piece: Vec<Tensor> = levels
            .iter()
            .map(|l| {
                let r = l.dims()[1] / frames0;
                l.narrow(1, at * r, n * r).unwrap()
            })
            .collect();
        parts.extend(stream.push(&piece).unwrap());
        at += n;
    }
    parts.extend(stream.finish().unwrap());
    Tensor::cat(&parts, 1).unwrap()
}

#[test]
fn streamed_codes_and_audio_equal_whole_signal_processing() {
    let mut rng = Rng(0x5EED);
    for name in CHECKPOINTS {
        let codec = load(name);
        let n = signal_len(codec.as_ref());
        let audio = signal(codec.channels(), n, codec.sample_rate(), 11);
        let whole = codec
            .encode(&audio.unsqueeze(0).unwrap(), &EncodeOptions::default())
            .unwrap();
        for max_piece in [1 + n / 40, n / 3, 3 * n] {
            let streamed = stream_encode(codec.as_ref(), &audio, &mut rng, max_piece);
            assert_eq!(streamed.len(), whole.len(), "{name}: level count");
            for (k, (s, w)) in streamed.iter().zip(&whole).enumerate() {
                let w = w.squeeze(0).unwrap();
                assert_eq!(s.dims(), w.dims(), "{name} level {k}: shape");
                assert_eq!(as_u32(s), as_u32(&w), "{name} level {k}: codes differ");
            }
        }
        let levels: Vec<Tensor> = whole.iter().map(|l| l.squeeze(0).unwrap()).collect();
        let mut noises = vec![Noise::Off];
        if codec.capabilities().decoder_noise {
            noises.push(Noise::Seeded(3));
        }
        for noise in noises {
            let opts = DecodeOptions { noise };
            let want = codec.decode(&whole, &opts).unwrap().squeeze(0).unwrap();
            let total = Some(levels[0].dims()[1]);
            let got = stream_decode(codec.as_ref(), &levels, &opts, total, &mut rng);
            let err = max_abs_diff(&got, &want);
            eprintln!("{name} {noise:?}: max |streamed - whole| = {err:.3e}");
            assert!(
                err < 1e-4,
                "{name} {noise:?}: streamed audio differs by {err}"
            );
        }
    }
}

#[test]
fn streams_refuse_bad_pieces_with_one_line_errors() {
    for name in CHECKPOINTS {
        let codec = load(name);
        let mut enc = codec.encode_stream(&EncodeOptions::default()).unwrap();
        let err = enc.finish().unwrap_err().to_string();
        assert!(err.contains("empty"), "{name}: {err}");
        let wrong = Tensor::zeros((codec.channels() + 1, 100), DType::F32, &Device::Cpu).unwrap();
        let err = enc.push(&wrong).unwrap_err().to_string();
        assert!(err.contains("channel"), "{name}: {err}");
        assert!(!err.contains('\n'), "{name}: {err}");
        let nan = Tensor::full(f32::NAN, (codec.channels(), 100), &Device::Cpu).unwrap();
        assert!(enc.push(&nan).is_err(), "{name}: NaN accepted");
        let mut dec = codec
            .decode_stream(&DecodeOptions::default(), None)
            .unwrap();
        assert!(dec.finish().is_err(), "{name}: decoding nothing succeeded");
        let n_levels = codec.levels().len();
        let too_big: Vec<Tensor> = codec
            .levels()
            .iter()
            .map(|l| {
                Tensor::full(l.codebook_size, (1, 4), &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::U32)
                    .unwrap()
            })
            .collect();
        assert_eq!(too_big.len(), n_levels);
        // Out-of-range codes are refused at push (windowed, causal) or at finish (fallback).
        let refused = dec.push(&too_big).is_err() || dec.finish().is_err();
        assert!(refused, "{name}: out-of-range codes accepted");
    }
}
