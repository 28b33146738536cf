//! Times tessera's resampler and log-mel on a deterministic signal and prints one JSON line per
//! case; `benches/compare/dsp_vs_torchaudio.py` runs it beside torchaudio and prints ratios.
//!
//! `cargo run --release -p tessera-benches --example dsp_timing -- SECONDS REPS THREADS`

use std::time::Instant;

use tessera_codec::audio::resample;
use tessera_codec::dsp::{MelSpectrogram, MelSpectrogramConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The signal the Python side builds too: a chirp, so every band carries energy.
fn chirp(sample_rate: u32, seconds: f64) -> Vec<f32> {
    let n = (sample_rate as f64 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / sample_rate as f64;
            (0.5 * (2.0 * std::f64::consts::PI * (100.0 + 200.0 * t) * t).sin()) as f32
        })
        .collect()
}

fn median_seconds(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: plans, caches, allocator
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let seconds: f64 = arg(1, "60").parse().expect("SECONDS");
    let reps: usize = arg(2, "5").parse().expect("REPS");
    let threads: usize = arg(3, "1").parse().expect("THREADS");

    for (from, to) in [(44_100u32, 24_000u32), (48_000, 16_000), (16_000, 24_000)] {
        let x = chirp(from, seconds);
        let t = median_seconds(reps, || {
            std::hint::black_box(resample(&x, from, to).unwrap());
        });
        println!("{{\"case\":\"resample_{from}_{to}\",\"seconds\":{t},\"audio_s\":{seconds}}}");
    }
    let recipes = [
        (
            "logmel_whisper80_16k",
            16_000,
            MelSpectrogramConfig::whisper(80),
        ),
        (
            "logmel_vocos_24k",
            24_000,
            MelSpectrogramConfig::vocos_24khz(),
        ),
    ];
    for (name, sr, cfg) in recipes {
        let mel = MelSpectrogram::new(cfg).unwrap().with_threads(threads);
        let x = chirp(sr, seconds);
        let t = median_seconds(reps, || {
            std::hint::black_box(mel.compute(&x).unwrap());
        });
        println!("{{\"case\":\"{name}\",\"seconds\":{t},\"audio_s\":{seconds}}}");
    }
}
