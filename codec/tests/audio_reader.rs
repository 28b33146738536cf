//! The chunked readers: fixed-size chunks that add up to the whole file, memory that does not
//! grow with the file, and resampling on the fly with the exact total length.

mod audio_support;

use audio_support::*;
use tessera_codec::audio::{
    AudioBuffer, AudioChunk, AudioReader, ChannelMode, DEFAULT_CHUNK_FRAMES, ReadOptions,
    ResamplingReader, WavFormat, WavWriter, load_audio, probe, read_audio, resample_buffer,
    resampled_len,
};

fn options(chunk_frames: usize) -> ReadOptions {
    ReadOptions {
        chunk_frames,
        ..ReadOptions::default()
    }
}

fn concat(chunks: &[AudioChunk], n_channels: usize) -> Vec<Vec<f32>> {
    let mut out = vec![Vec::new(); n_channels];
    for chunk in chunks {
        for (o, c) in out.iter_mut().zip(&chunk.channels) {
            o.extend_from_slice(c);
        }
    }
    out
}

#[test]
fn chunks_have_the_asked_length_and_add_up_to_the_file() {
    for file in ["flac_s16.flac", "wav_u8.wav", "mp3.mp3", "vorbis.webm"] {
        for mode in [ChannelMode::Keep, ChannelMode::Mono] {
            let whole = read_audio(fixture(file), mode).unwrap();
            for chunk_frames in [1, 100, 1152, 4096, DEFAULT_CHUNK_FRAMES] {
                let reader =
                    AudioReader::open_with(fixture(file), mode, &options(chunk_frames)).unwrap();
                assert_eq!(reader.n_channels(), whole.n_channels());
                assert_eq!(reader.chunk_frames(), chunk_frames);
                let chunks: Vec<AudioChunk> = reader.map(Result::unwrap).collect();
                let mut start = 0;
                for (i, chunk) in chunks.iter().enumerate() {
                    assert_eq!(chunk.start_frame, start, "{file}");
                    assert_eq!(chunk.n_channels(), whole.n_channels());
                    if i + 1 < chunks.len() {
                        assert_eq!(chunk.n_frames(), chunk_frames, "{file} chunk {i}");
                    } else {
                        assert!((1..=chunk_frames).contains(&chunk.n_frames()));
                    }
                    start += chunk.n_frames() as u64;
                }
                assert!(
                    concat(&chunks, whole.n_channels()) == whole.channels(),
                    "{file} {chunk_frames}"
                );
            }
        }
    }
}

#[test]
fn the_reader_reports_the_file_and_its_progress() {
    let path = fixture("wav_s16.wav");
    let mut reader = AudioReader::open_with(&path, ChannelMode::Mono, &options(1000)).unwrap();
    assert_eq!(reader.info(), &probe(&path).unwrap());
    assert_eq!(
        reader.info().channels,
        2,
        "info describes the file, before the down-mix"
    );
    assert_eq!(reader.n_channels(), 1);
    assert_eq!(reader.sample_rate(), 16_000);
    assert_eq!(reader.channel_mode(), ChannelMode::Mono);
    assert_eq!(reader.frames_read(), 0);
    reader.next_chunk().unwrap();
    assert_eq!(reader.frames_read(), 1000);
    while reader.next_chunk().unwrap().is_some() {}
    assert_eq!(reader.frames_read(), 4000);
    assert_eq!(reader.skipped_packets(), 0);
}

/// Writes `seconds` of a 440 Hz tone as 16-bit mono WAV at 8 kHz.
fn write_tone(path: &std::path::Path, seconds: usize) {
    let mut writer = WavWriter::create(path, 8000, 1, WavFormat::Pcm16).unwrap();
    let tone = sine(440.0, 8000, 8000, 0.5);
    for _ in 0..seconds {
        writer.write_chunk(&[&tone]).unwrap();
    }
    writer.finalize().unwrap();
}

/// Reads the whole file and returns (frames, longest chunk, most frames left buffered).
fn stream_stats(path: &std::path::Path, chunk_frames: usize) -> (u64, usize, usize) {
    let mut reader =
        AudioReader::open_with(path, ChannelMode::Keep, &options(chunk_frames)).unwrap();
    let (mut longest, mut most_buffered) = (0, reader.buffered_frames());
    while let Some(chunk) = reader.next_chunk().unwrap() {
        longest = longest.max(chunk.n_frames());
        most_buffered = most_buffered.max(reader.buffered_frames());
    }
    (reader.frames_read(), longest, most_buffered)
}

#[test]
fn reader_memory_does_not_grow_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.wav");
    let long = dir.path().join("long.wav");
    write_tone(&short, 1);
    write_tone(&long, 120);

    let chunk_frames = 4096;
    let (short_frames, short_longest, short_buffered) = stream_stats(&short, chunk_frames);
    let (long_frames, long_longest, long_buffered) = stream_stats(&long, chunk_frames);
    assert_eq!(short_frames, 8000);
    assert_eq!(long_frames, 120 * 8000);
    // The reader holds one chunk plus what is left of the last decoded packet (symphonia's WAV
    // packets are at most 1152 frames), for a 1 s file and a 120 s one alike.
    for (longest, buffered) in [
        (short_longest, short_buffered),
        (long_longest, long_buffered),
    ] {
        assert_eq!(longest, chunk_frames);
        assert!(buffered < 1152, "{buffered} frames left buffered");
    }
    assert!(long_buffered <= short_buffered.max(1151));

    // The resampling reader's chunks are bounded the same way.
    let reader = AudioReader::open_with(&long, ChannelMode::Keep, &options(chunk_frames)).unwrap();
    let mut resampling = ResamplingReader::new(reader, 24_000).unwrap();
    let mut total = 0u64;
    let mut longest = 0;
    while let Some(chunk) = resampling.next_chunk().unwrap() {
        longest = longest.max(chunk.n_frames());
        total += chunk.n_frames() as u64;
    }
    assert_eq!(total, 120 * 24_000);
    // One input chunk (x3) plus the resampler's own chunk of 1024 input frames (x3).
    assert!(longest <= 3 * (chunk_frames + 1024), "{longest}");
}

#[test]
fn the_resampling_reader_matches_resampling_the_whole_file() {
    for (file, target) in [
        ("flac_s16.flac", 24_000),
        ("wav_s16.wav", 44_100),
        ("vorbis.webm", 16_000),
        ("mp3.mp3", 44_100),
    ] {
        let whole = read_audio(fixture(file), ChannelMode::Keep).unwrap();
        let expected = resample_buffer(&whole, target).unwrap();
        assert_eq!(
            expected.n_frames() as u64,
            resampled_len(whole.n_frames() as u64, whole.sample_rate(), target)
        );

        let reader =
            AudioReader::open_with(fixture(file), ChannelMode::Keep, &options(777)).unwrap();
        let resampling = ResamplingReader::new(reader, target).unwrap();
        assert_eq!(resampling.sample_rate(), target);
        assert_eq!(resampling.info().sample_rate, whole.sample_rate());
        let chunks: Vec<AudioChunk> = resampling.map(Result::unwrap).collect();
        let mut start = 0;
        for chunk in &chunks {
            assert_eq!(chunk.start_frame, start);
            assert!(chunk.n_frames() > 0);
            start += chunk.n_frames() as u64;
        }
        let streamed = AudioBuffer::new(target, concat(&chunks, whole.n_channels())).unwrap();
        assert_eq!(streamed.n_frames(), expected.n_frames(), "{file}");
        for c in 0..whole.n_channels() {
            let worst = streamed
                .channel(c)
                .iter()
                .zip(expected.channel(c))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{file} channel {c}: {worst}");
        }

        let loaded = load_audio(fixture(file), target, ChannelMode::Keep).unwrap();
        assert!(
            loaded == streamed,
            "{file}: load_audio differs from the streamed result"
        );
    }
}

#[test]
fn load_audio_resamples_the_sine_and_can_down_mix() {
    let buf = load_audio(fixture("flac_s16.flac"), 16_000, ChannelMode::Keep).unwrap();
    assert_eq!(buf.sample_rate(), 16_000);
    assert_eq!(buf.n_frames(), 8000);
    for (c, freq) in [(0, 440.0), (1, 660.0)] {
        let x = middle(buf.channel(c));
        assert!((zero_crossing_freq(x, 16_000) - freq).abs() < 0.5);
        assert!(sine_level_db(x, 0.5).abs() < 0.01);
    }
    let mono = load_audio(fixture("flac_s16.flac"), 16_000, ChannelMode::Mono).unwrap();
    assert_eq!(mono.n_channels(), 1);
    assert_eq!(mono.n_frames(), 8000);
    // At the file's own rate nothing is resampled.
    let same = load_audio(fixture("flac_s16.flac"), 44_100, ChannelMode::Keep).unwrap();
    assert_eq!(
        same,
        read_audio(fixture("flac_s16.flac"), ChannelMode::Keep).unwrap()
    );
}

#[test]
fn readers_and_writers_can_move_to_worker_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<AudioReader>();
    assert_send::<ResamplingReader>();
    assert_send::<tessera_codec::audio::Resampler>();
    assert_send::<WavWriter>();
}
