//! Bad input gives `Error::File` naming the path with a one-line reason, never a panic, through
//! every entry point.

mod audio_support;

use std::path::Path;

use audio_support::*;
use tessera_codec::audio::{
    AudioReader, ChannelMode, ReadOptions, ResamplingReader, load_audio, probe, probe_exact,
    read_audio,
};

/// Every way of reading `path`; all must fail alike. Returns the reason from `read_audio`.
fn reason_from_all_readers(path: &Path) -> String {
    let reason = file_error(read_audio(path, ChannelMode::Keep), path);
    file_error(read_audio(path, ChannelMode::Mono), path);
    file_error(load_audio(path, 16_000, ChannelMode::Mono), path);
    file_error(probe_exact(path), path);
    let streamed = AudioReader::open(path, ChannelMode::Keep)
        .and_then(|reader| reader.collect::<Result<Vec<_>, _>>());
    file_error(streamed, path);
    let resampled = ResamplingReader::open(path, 24_000, ChannelMode::Keep)
        .and_then(|reader| reader.collect::<Result<Vec<_>, _>>());
    file_error(resampled, path);
    reason
}

/// Files whose header is already bad: `probe` fails too, with the same reason.
fn header_reason(name: &str) -> String {
    let path = fixture(name);
    let reason = reason_from_all_readers(&path);
    assert_eq!(file_error(probe(&path), &path), reason);
    reason
}

/// Files with a good header and bad data: `probe` succeeds, decoding fails.
fn data_reason(name: &str) -> String {
    let path = fixture(name);
    probe(&path).unwrap_or_else(|e| panic!("{name}: probe should succeed: {e}"));
    reason_from_all_readers(&path)
}

#[test]
fn missing_file() {
    let path = fixture("does_not_exist.wav");
    assert_eq!(header_reason("does_not_exist.wav"), "no such file");
    assert!(!path.exists());
}

#[test]
fn a_directory() {
    let dir = fixture("");
    let reason = file_error(probe(&dir), &dir);
    assert!(reason.contains("directory"), "{reason}");
}

#[test]
fn empty_file() {
    assert_eq!(header_reason("broken_empty.wav"), "file is empty");
}

#[test]
fn not_audio() {
    for name in ["broken_text.wav", "broken_random.bin"] {
        let reason = header_reason(name);
        assert!(
            reason.contains("not a recognised audio file"),
            "{name}: {reason}"
        );
    }
}

#[test]
fn truncated_wav_reports_where_the_data_ends() {
    let reason = data_reason("broken_truncated.wav");
    assert!(reason.starts_with("truncated"), "{reason}");
    assert!(reason.contains("frame 489"), "{reason}");
}

#[test]
fn truncated_flac_fails_in_its_header() {
    let reason = header_reason("broken_truncated.flac");
    assert!(reason.starts_with("truncated"), "{reason}");
}

#[test]
fn truncated_mp3_is_shorter_than_its_header_says() {
    let reason = data_reason("broken_truncated.mp3");
    assert!(reason.starts_with("truncated"), "{reason}");
    assert!(reason.contains("declares 22050 frames"), "{reason}");
}

#[test]
fn unsupported_codec_is_named() {
    let reason = header_reason("opus.webm");
    assert!(reason.starts_with("unsupported codec opus"), "{reason}");
}

#[test]
fn zero_channels() {
    let reason = header_reason("broken_zero_channels.wav");
    assert!(reason.contains("channel"), "{reason}");
}

#[test]
fn absurd_sample_rates() {
    for (name, rate) in [
        ("broken_rate_zero.wav", "0 Hz"),
        ("broken_rate_huge.wav", "1000000 Hz"),
    ] {
        let reason = header_reason(name);
        assert!(
            reason.starts_with(&format!("sample rate {rate}")),
            "{name}: {reason}"
        );
    }
}

#[test]
fn nan_samples_are_rejected_at_the_first_one() {
    let reason = data_reason("broken_nan.wav");
    // The file has NaN at frame 100 and +inf at frame 200.
    assert!(reason.contains("frame 100"), "{reason}");
    assert!(reason.contains("NaN"), "{reason}");
}

#[test]
fn a_chain_that_changes_rate_fails_at_the_join() {
    let reason = data_reason("broken_chained_rate_change.ogg");
    assert!(reason.contains("frame 5513"), "{reason}");
    assert!(
        reason.contains("22050 Hz, 1 channel -> 16000 Hz, 1 channel"),
        "{reason}"
    );
}

#[test]
fn a_corrupt_packet_fails_by_default_and_can_be_skipped() {
    let path = fixture("broken_corrupt_packet.m4a");
    let reason = data_reason("broken_corrupt_packet.m4a");
    assert!(reason.starts_with("corrupt data at frame"), "{reason}");

    let options = ReadOptions {
        skip_corrupt_packets: true,
        ..ReadOptions::default()
    };
    let mut reader = AudioReader::open_with(&path, ChannelMode::Keep, &options).unwrap();
    let mut frames = 0;
    while let Some(chunk) = reader.next_chunk().unwrap() {
        frames += chunk.n_frames();
    }
    assert!(reader.skipped_packets() >= 1);
    let intact = read_audio(fixture("aac.m4a"), ChannelMode::Keep)
        .unwrap()
        .n_frames();
    assert!(
        frames < intact,
        "skipping drops the corrupt packets' frames"
    );
    assert!(frames + 1024 * reader.skipped_packets() as usize >= intact);
}

#[test]
fn a_reader_is_finished_after_an_error() {
    let path = fixture("broken_nan.wav");
    let mut reader = AudioReader::open(&path, ChannelMode::Keep).unwrap();
    file_error(reader.next_chunk(), &path);
    assert!(reader.next_chunk().unwrap().is_none());
    assert!(reader.next().is_none());
}

#[test]
fn bad_arguments_are_invalid_not_file_errors() {
    let path = fixture("wav_s16.wav");
    for rate in [0, 10, 1_000_000] {
        let result = load_audio(&path, rate, ChannelMode::Keep);
        assert!(
            matches!(result, Err(tessera_core::Error::Invalid(_))),
            "target rate {rate}: {result:?}"
        );
    }
    for chunk_frames in [0, usize::MAX] {
        let options = ReadOptions {
            chunk_frames,
            ..ReadOptions::default()
        };
        let result = AudioReader::open_with(&path, ChannelMode::Keep, &options);
        assert!(matches!(result, Err(tessera_core::Error::Invalid(_))));
    }
}
