//! Audio decode + resample throughput: what a tokenising job spends before the model runs.
//!
//! `cargo bench -p tessera-benches --bench audio_io`. A 30 s stereo 44.1 kHz 16-bit WAV is
//! written to a temporary directory; the committed FLAC/MP3/Vorbis fixtures (0.5 s) measure the
//! compressed decoders. Each case reads the file, down-mixes to mono and resamples to 24 kHz,
//! as `tessera encode` does for a 24 kHz codec. Throughput is in input frames.

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tessera_codec::audio::{
    AudioBuffer, ChannelMode, WavFormat, load_audio, probe_exact, write_wav,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn wav_30s(dir: &Path) -> PathBuf {
    let sr = 44_100u32;
    let n = sr as usize * 30;
    let ch = |f: f32| -> Vec<f32> {
        (0..n)
            .map(|i| 0.4 * (2.0 * std::f32::consts::PI * f * i as f32 / sr as f32).sin())
            .collect()
    };
    let buf = AudioBuffer::new(sr, vec![ch(440.0), ch(660.0)]).unwrap();
    let p = dir.join("30s.wav");
    write_wav(&p, &buf, WavFormat::Pcm16).unwrap();
    p
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/audio");
    let files = [
        ("wav_s16_30s", wav_30s(dir.path())),
        ("flac_s16", fixtures.join("flac_s16.flac")),
        ("mp3", fixtures.join("mp3.mp3")),
        ("vorbis", fixtures.join("vorbis.ogg")),
    ];
    let mut g = c.benchmark_group("decode_resample_24k_mono");
    g.sample_size(10);
    for (name, path) in &files {
        let frames = probe_exact(path).unwrap().frames.unwrap();
        g.throughput(Throughput::Elements(frames));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(load_audio(black_box(path), 24_000, ChannelMode::Mono).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
