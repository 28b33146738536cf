//! Every supported format decodes to the sine that scripts/fixtures/make_audio_fixtures.sh
//! wrote: 440 Hz on channel 0 and 660 Hz on channel 1, amplitude 0.5 (-6 dBFS).

mod audio_support;

use audio_support::*;
use tessera_codec::audio::{AudioBuffer, ChannelMode, probe, probe_exact, read_audio};

const AMPLITUDE: f64 = 0.5;
const FREQS: [f64; 2] = [440.0, 660.0];

#[derive(Debug, Clone, Copy)]
enum Frames {
    /// Exactly this many decoded frames.
    Exact(u64),
    /// The nominal length, give or take encoder priming and padding that the container does
    /// not let symphonia remove.
    About(u64, u64),
}

struct Case {
    file: &'static str,
    format: &'static str,
    codec: &'static str,
    rate: u32,
    channels: usize,
    /// What `probe` reads from the header (`None`: the container does not say).
    header_frames: Option<u64>,
    decoded: Frames,
    bits: Option<u32>,
    quality: Quality,
}

/// How close the decoded signal must be to the sine that was encoded.
#[derive(Debug, Clone, Copy)]
struct Quality {
    /// Level tolerance, dB.
    level_tol_db: f64,
    /// Least ratio of sine to fit residual, dB (set by the sample depth or the codec).
    min_snr_db: f64,
    /// Whether frame 0 of the output is frame 0 of the signal (no priming left in); checked to
    /// well under one frame through the phase of the fitted sine.
    aligned: bool,
}

const fn quality(level_tol_db: f64, min_snr_db: f64, aligned: bool) -> Quality {
    Quality {
        level_tol_db,
        min_snr_db,
        aligned,
    }
}

const PCM8: Quality = quality(0.05, 40.0, true);
const PCM16: Quality = quality(0.01, 85.0, true);
const PCM24_UP: Quality = quality(0.01, 130.0, true);
/// Lossy codecs whose priming symphonia removes (LAME header, Ogg/WebM Vorbis).
const LOSSY: Quality = quality(1.0, 20.0, true);
/// AAC in MP4 or ADTS: the encoder's priming frames stay at the start.
const LOSSY_PRIMED: Quality = quality(1.0, 20.0, false);

#[allow(clippy::too_many_arguments)]
const fn case(
    file: &'static str,
    format: &'static str,
    codec: &'static str,
    rate: u32,
    channels: usize,
    header_frames: Option<u64>,
    decoded: Frames,
    bits: Option<u32>,
    quality: Quality,
) -> Case {
    Case {
        file,
        format,
        codec,
        rate,
        channels,
        header_frames,
        decoded,
        bits,
        quality,
    }
}

use Frames::{About, Exact};

const PRIMING: u64 = 2048;

#[rustfmt::skip]
const CASES: &[Case] = &[
    case("wav_u8.wav", "wave", "pcm_u8", 8000, 2, Some(4000), Exact(4000), Some(8), PCM8),
    case("wav_s16.wav", "wave", "pcm_s16le", 16000, 2, Some(4000), Exact(4000), Some(16), PCM16),
    case("wav_s24.wav", "wave", "pcm_s24le", 16000, 1, Some(4000), Exact(4000), Some(24), PCM24_UP),
    case("wav_s32.wav", "wave", "pcm_s32le", 16000, 1, Some(4000), Exact(4000), Some(32), PCM24_UP),
    case("wav_f32.wav", "wave", "pcm_f32le", 8000, 2, Some(2000), Exact(2000), Some(32), PCM24_UP),
    case("wav_f64.wav", "wave", "pcm_f64le", 8000, 1, Some(2000), Exact(2000), Some(64), PCM24_UP),
    // Written to a pipe: the header cannot give the length.
    case("wav_stream_unknown_length.wav", "wave", "pcm_s16le", 8000, 1, None, Exact(2000), Some(16), PCM16),
    case("aiff_s16.aiff", "aiff", "pcm_s16be", 8000, 1, Some(2000), Exact(2000), Some(16), PCM16),
    case("pcm.caf", "caf", "pcm_s16le", 16000, 1, Some(4000), Exact(4000), Some(16), PCM16),
    case("flac_s16.flac", "flac", "flac", 44100, 2, Some(22050), Exact(22050), Some(16), PCM16),
    case("flac_s24.flac", "flac", "flac", 16000, 1, Some(4000), Exact(4000), Some(24), PCM24_UP),
    case("flac.mkv", "matroska", "flac", 16000, 1, None, Exact(4000), Some(24), PCM24_UP),
    case("alac.m4a", "isomp4", "alac", 22050, 2, Some(5513), Exact(5513), None, PCM24_UP),
    // CAF's packet table rounds the count up to whole 4096-frame ALAC packets.
    case("alac.caf", "caf", "alac", 22050, 1, Some(8192), Exact(5513), None, PCM24_UP),
    // LAME's gapless header lets symphonia trim the MP3 exactly.
    case("mp3.mp3", "mp3", "mp3", 44100, 2, Some(22050), Exact(22050), None, LOSSY),
    case("vorbis.ogg", "ogg", "vorbis", 44100, 2, Some(22050), Exact(22050), None, LOSSY),
    case("vorbis.webm", "matroska", "vorbis", 48000, 2, None, About(24000, PRIMING), None, LOSSY),
    // symphonia ignores MP4 edit lists: the 1024 frames of AAC priming stay in.
    case("aac.m4a", "isomp4", "aac", 44100, 2, Some(23074), About(22050, PRIMING), None, LOSSY_PRIMED),
    // ADTS has no length field: symphonia's guess from the bitrate is not reported as a count.
    case("aac.aac", "aac", "aac", 24000, 1, None, About(12000, PRIMING), None, LOSSY_PRIMED),
];

fn check_frames(case: &Case, n: u64) {
    match case.decoded {
        Exact(expected) => assert_eq!(n, expected, "{}: decoded frames", case.file),
        About(nominal, tol) => assert!(
            n.abs_diff(nominal) <= tol,
            "{}: decoded {n} frames, expected {nominal} +- {tol}",
            case.file
        ),
    }
}

fn check_sine(case: &Case, buf: &AudioBuffer) {
    for (c, &freq) in FREQS.iter().enumerate().take(buf.n_channels()) {
        let x = middle(buf.channel(c));
        let measured = zero_crossing_freq(x, buf.sample_rate());
        assert!(
            (measured - freq).abs() < 0.002 * freq,
            "{} channel {c}: {measured:.2} Hz, expected {freq}",
            case.file
        );
        let level = sine_level_db(x, AMPLITUDE);
        let q = case.quality;
        assert!(
            level.abs() <= q.level_tol_db,
            "{} channel {c}: level {level:.3} dB re -6 dBFS",
            case.file
        );
        let first = buf.n_frames() / 4;
        let (amplitude, phase, _, residual) = fit_sine(x, freq, buf.sample_rate(), first);
        let snr = 20.0 * (amplitude / std::f64::consts::SQRT_2 / residual).log10();
        assert!(
            snr >= q.min_snr_db,
            "{} channel {c}: sine fit SNR {snr:.1} dB below {}",
            case.file,
            q.min_snr_db
        );
        if q.aligned {
            // One frame of shift is 2 pi f / rate (0.06 rad at 440 Hz and 44.1 kHz).
            assert!(
                phase.abs() < 2e-3,
                "{} channel {c}: phase {phase:.5} rad",
                case.file
            );
        }
    }
}

#[test]
fn probe_reads_the_header_of_every_format() {
    for case in CASES {
        let path = fixture(case.file);
        let info = probe(&path).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(info.path, path);
        assert_eq!(info.format, case.format, "{}", case.file);
        assert_eq!(info.codec, case.codec, "{}", case.file);
        assert_eq!(info.sample_rate, case.rate, "{}", case.file);
        assert_eq!(info.channels, case.channels, "{}", case.file);
        assert_eq!(info.frames, case.header_frames, "{}", case.file);
        assert_eq!(info.bits_per_sample, case.bits, "{}", case.file);
        if let Some(frames) = case.header_frames {
            let duration = info.duration_s.expect("duration from frames");
            assert!((duration - frames as f64 / f64::from(case.rate)).abs() < 1e-9);
        }
    }
}

#[test]
fn probe_exact_counts_the_decoded_frames() {
    for case in CASES {
        let info = probe_exact(fixture(case.file)).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let frames = info.frames.expect("probe_exact always counts");
        check_frames(case, frames);
        let buf = read_audio(fixture(case.file), ChannelMode::Keep).unwrap();
        assert_eq!(frames, buf.n_frames() as u64, "{}", case.file);
        assert!((info.duration_s.unwrap() - buf.duration_s()).abs() < 1e-12);
    }
}

#[test]
fn every_format_decodes_to_the_expected_sine() {
    for case in CASES {
        let buf = read_audio(fixture(case.file), ChannelMode::Keep)
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(buf.sample_rate(), case.rate, "{}", case.file);
        assert_eq!(buf.n_channels(), case.channels, "{}", case.file);
        check_frames(case, buf.n_frames() as u64);
        check_sine(case, &buf);
    }
}

#[test]
fn pcm_formats_decode_to_the_same_samples() {
    // 16-bit and wider PCM of the same sine: the samples agree to the coarsest quantisation.
    let reference = read_audio(fixture("wav_f64.wav"), ChannelMode::Keep).unwrap();
    for (file, step) in [("aiff_s16.aiff", 1.0 / 32768.0), ("wav_f32.wav", 1e-7)] {
        let buf = read_audio(fixture(file), ChannelMode::Keep).unwrap();
        for (a, b) in buf.channel(0).iter().zip(reference.channel(0)) {
            assert!((a - b).abs() <= step as f32, "{file}: {a} vs {b}");
        }
    }
}

#[test]
fn mono_mode_is_the_mean_of_the_channels() {
    for case in CASES.iter().filter(|c| c.channels == 2) {
        let stereo = read_audio(fixture(case.file), ChannelMode::Keep).unwrap();
        let mono = read_audio(fixture(case.file), ChannelMode::Mono).unwrap();
        assert_eq!(mono.n_channels(), 1, "{}", case.file);
        assert_eq!(mono.n_frames(), stereo.n_frames(), "{}", case.file);
        assert_eq!(mono.sample_rate(), stereo.sample_rate());
        for (i, &m) in mono.channel(0).iter().enumerate() {
            let expected = (stereo.channel(0)[i] + stereo.channel(1)[i]) / 2.0;
            assert!((m - expected).abs() <= 1e-7, "{} frame {i}", case.file);
        }
        assert_eq!(mono, stereo.to_mono());
    }
}

#[test]
fn a_chained_ogg_stream_of_one_format_decodes_as_one_signal() {
    let path = fixture("vorbis_chained.ogg");
    let buf = read_audio(&path, ChannelMode::Keep).unwrap();
    // Two 0.25 s links of 5513 frames each.
    assert_eq!(buf.n_frames(), 2 * 5513);
    for half in buf.channel(0).chunks(5513) {
        let x = middle(half);
        assert!((zero_crossing_freq(x, 22050) - 440.0).abs() < 1.0);
        assert!(sine_level_db(x, AMPLITUDE).abs() < 1.0);
    }
    // The header only knows the first link; counting finds both.
    assert_eq!(probe(&path).unwrap().frames, Some(5513));
    assert_eq!(probe_exact(&path).unwrap().frames, Some(2 * 5513));
}
