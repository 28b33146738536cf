//! The resampler keeps frequency, level, phase and DC, gives exactly round(n * to / from)
//! frames, and streams to the same samples as a one-shot call.

mod audio_support;

use audio_support::*;
use tessera_codec::audio::{AudioBuffer, Resampler, resample, resample_buffer, resampled_len};
use tessera_core::Error;

const PAIRS: [(u32, u32); 4] = [
    (44_100, 24_000),
    (16_000, 48_000),
    (48_000, 16_000),
    (22_050, 24_000),
];

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn analytic(freq: f64, rate: u32, n: usize, amplitude: f64) -> Vec<f32> {
    sine(freq, rate, n, amplitude)
}

#[test]
fn a_sine_keeps_its_frequency_level_and_phase() {
    for (from, to) in PAIRS {
        let x = analytic(440.0, from, from as usize, 0.5);
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len(), to as usize, "{from}->{to}");

        let mid = middle(&y);
        let freq = zero_crossing_freq(mid, to);
        assert!((freq - 440.0).abs() < 0.05, "{from}->{to}: {freq} Hz");
        let level = sine_level_db(mid, 0.5);
        assert!(level.abs() < 0.001, "{from}->{to}: level {level} dB");

        // Time-aligned: output frame j is the input signal at time j / to.
        let expected = analytic(440.0, to, y.len(), 0.5);
        let start = y.len() / 4;
        let worst = max_abs_diff(mid, &expected[start..]);
        // Exact polyphase plan for these ratios: only the filter's passband ripple remains.
        assert!(worst < 2e-5, "{from}->{to}: max deviation {worst}");
    }
}

#[test]
fn awkward_ratios_are_time_aligned_too() {
    // 96000 -> 11025 needs more leading zeros than one rubato chunk; the others have too many
    // phases for an exact table and interpolate between 256 of them (aligned to 1/256 frame).
    for (from, to) in [
        (96_000, 11_025),
        (8_000, 12_346),
        (44_100, 44_101),
        (48_000, 47_999),
    ] {
        let x = analytic(440.0, from, from as usize / 2, 0.5);
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len() as u64, resampled_len(x.len() as u64, from, to));
        let expected = analytic(440.0, to, y.len(), 0.5);
        let start = y.len() / 4;
        let worst = max_abs_diff(middle(&y), &expected[start..]);
        assert!(worst < 1e-3, "{from}->{to}: max deviation {worst}");
    }
}

#[test]
fn the_passband_is_flat_to_ninety_percent_of_nyquist() {
    for (from, to) in PAIRS {
        let nyquist = f64::from(from.min(to)) / 2.0;
        for rel in [0.05, 0.3, 0.6, 0.8, 0.9] {
            let freq = rel * nyquist;
            let x = analytic(freq, from, from as usize / 2, 0.5);
            let y = resample(&x, from, to).unwrap();
            let (amplitude, _, _, _) = fit_sine(middle(&y), freq, to, y.len() / 4);
            let level = 20.0 * (amplitude / 0.5).log10();
            assert!(
                level.abs() < 0.1,
                "{from}->{to} at {freq:.0} Hz: {level:.4} dB"
            );
        }
    }
}

#[test]
fn downsampling_rejects_what_would_alias() {
    // 10 kHz is above the 8 kHz Nyquist of 16 kHz output: it must not fold back to 6 kHz.
    let x = analytic(10_000.0, 48_000, 24_000, 0.5);
    let y = resample(&x, 48_000, 16_000).unwrap();
    let level = 20.0 * (rms(middle(&y)) * 2f64.sqrt() / 0.5).log10();
    assert!(level < -100.0, "alias at {level:.1} dB");
}

#[test]
fn no_dc_shift() {
    for (from, to) in PAIRS {
        let x: Vec<f32> = analytic(1000.0, from, from as usize / 2, 0.3)
            .iter()
            .map(|v| v + 0.25)
            .collect();
        let y = resample(&x, from, to).unwrap();
        // Whole periods of 1 kHz in the middle half: the mean is the DC alone.
        let mid = middle(&y);
        let periods = mid.len() * 1000 / to as usize;
        let whole = &mid[..periods * to as usize / 1000];
        let dc = mean(whole);
        assert!((dc - 0.25).abs() < 1e-4, "{from}->{to}: DC {dc}");
    }
}

#[test]
fn output_length_is_round_n_times_ratio() {
    let pairs = [
        (44_100, 24_000),
        (16_000, 48_000),
        (48_000, 16_000),
        (22_050, 24_000),
        (44_100, 44_101),
        (8_000, 11_025),
        (96_000, 11_025),
    ];
    for (from, to) in pairs {
        for n in [
            0usize, 1, 2, 3, 7, 100, 1023, 1024, 1025, 4097, 44_100, 50_001,
        ] {
            let x = analytic(300.0, from, n, 0.5);
            let y = resample(&x, from, to).unwrap();
            let expected =
                ((n as u128 * to as u128 * 2 + from as u128) / (2 * from as u128)) as usize;
            assert_eq!(y.len(), expected, "{from}->{to}, n = {n}");
            assert_eq!(resampled_len(n as u64, from, to), expected as u64);
        }
    }
    // Halves round up: 1 frame at 2:1 down is 0.5 -> 1.
    assert_eq!(resampled_len(1, 48_000, 24_000), 1);
    assert_eq!(resampled_len(3, 48_000, 16_000), 1);
}

/// Deterministic pseudo-random chunk lengths in 0..max (a plain LCG).
fn chunk_lengths(seed: u64, total: usize, max: usize) -> Vec<usize> {
    let mut state = seed;
    let mut lengths = Vec::new();
    let mut left = total;
    while left > 0 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = ((state >> 33) as usize % max).min(left);
        lengths.push(len);
        left -= len;
    }
    lengths
}

#[test]
fn streaming_in_random_chunks_equals_one_shot() {
    for (i, (from, to)) in PAIRS.into_iter().enumerate() {
        let n = from as usize * 3 / 4;
        let left = analytic(440.0, from, n, 0.5);
        let right = analytic(1234.5, from, n, 0.25);
        let whole = resample_buffer(
            &AudioBuffer::new(from, vec![left.clone(), right.clone()]).unwrap(),
            to,
        )
        .unwrap();

        for max_chunk in [5, 700, 5000] {
            let mut resampler = Resampler::new(from, to, 2).unwrap();
            let mut out = [Vec::new(), Vec::new()];
            let mut at = 0;
            for len in chunk_lengths(i as u64 * 31 + max_chunk as u64, n, max_chunk) {
                let produced = resampler
                    .process(&[&left[at..at + len], &right[at..at + len]])
                    .unwrap();
                at += len;
                for (o, p) in out.iter_mut().zip(produced) {
                    o.extend(p);
                }
            }
            for (o, p) in out.iter_mut().zip(resampler.flush().unwrap()) {
                o.extend(p);
            }
            for (c, o) in out.iter().enumerate() {
                assert_eq!(
                    o.len(),
                    whole.n_frames(),
                    "{from}->{to} chunks < {max_chunk}"
                );
                let worst = max_abs_diff(o, whole.channel(c));
                assert!(worst <= 1e-6, "{from}->{to} chunks < {max_chunk}: {worst}");
            }
            assert_eq!(resampler.frames_in(), n as u64);
            assert_eq!(resampler.frames_out(), whole.n_frames() as u64);
        }
    }
}

#[test]
fn channels_are_resampled_independently() {
    let left = analytic(440.0, 44_100, 10_000, 0.5);
    let right = analytic(3_000.0, 44_100, 10_000, 0.1);
    let both = resample_buffer(
        &AudioBuffer::new(44_100, vec![left.clone(), right.clone()]).unwrap(),
        16_000,
    )
    .unwrap();
    // rubato blends sinc phases differently for one and for several channels: equal to
    // rounding, not bit for bit.
    for (c, x) in [left, right].iter().enumerate() {
        let alone = resample(x, 44_100, 16_000).unwrap();
        assert_eq!(alone.len(), both.n_frames());
        assert!(max_abs_diff(both.channel(c), &alone) < 1e-6, "channel {c}");
    }
}

#[test]
fn same_rate_is_the_identity() {
    let x = analytic(440.0, 24_000, 5_000, 0.7);
    assert!(resample(&x, 24_000, 24_000).unwrap() == x);
    let mut resampler = Resampler::new(24_000, 24_000, 1).unwrap();
    assert_eq!(
        resampler.process(&[&x[..10]]).unwrap(),
        vec![x[..10].to_vec()]
    );
    assert!(resampler.flush().unwrap()[0].is_empty());
    assert_eq!(resampler.cutoff(), None);
}

#[test]
fn reset_starts_a_new_signal() {
    let x = analytic(440.0, 22_050, 3_000, 0.5);
    let once = resample(&x, 22_050, 24_000).unwrap();
    let mut resampler = Resampler::new(22_050, 24_000, 1).unwrap();
    resampler.process(&[&x[..1234]]).unwrap();
    resampler.reset().unwrap();
    let mut again = resampler.process(&[&x]).unwrap().remove(0);
    again.extend(resampler.flush().unwrap().remove(0));
    assert!(again == once, "not the same samples after reset");
}

#[test]
fn the_filter_cutoff_is_close_to_nyquist() {
    for (from, to) in PAIRS {
        let cutoff = Resampler::new(from, to, 1).unwrap().cutoff().unwrap();
        assert!(
            (0.9..1.0).contains(&cutoff),
            "{from}->{to}: cutoff {cutoff}"
        );
    }
}

#[test]
fn bad_rates_and_shapes_are_invalid_arguments() {
    for (from, to) in [
        (0, 16_000),
        (16_000, 0),
        (999, 16_000),
        (16_000, 768_001),
        (u32::MAX, 8_000),
    ] {
        assert!(
            matches!(Resampler::new(from, to, 1), Err(Error::Invalid(_))),
            "{from}->{to}"
        );
        assert!(matches!(
            resample(&[0.0; 10], from, to),
            Err(Error::Invalid(_))
        ));
    }
    assert!(matches!(
        Resampler::new(16_000, 8_000, 0),
        Err(Error::Invalid(_))
    ));

    let mut resampler = Resampler::new(16_000, 8_000, 2).unwrap();
    let one: [&[f32]; 1] = [&[0.0; 4]];
    assert!(matches!(resampler.process(&one), Err(Error::Invalid(_))));
    let ragged: [&[f32]; 2] = [&[0.0; 4], &[0.0; 3]];
    assert!(matches!(resampler.process(&ragged), Err(Error::Invalid(_))));
    resampler.flush().unwrap();
    let two: [&[f32]; 2] = [&[0.0; 4], &[0.0; 4]];
    assert!(matches!(resampler.process(&two), Err(Error::Invalid(_))));
}
