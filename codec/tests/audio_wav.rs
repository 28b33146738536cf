//! Writing WAV: float and 16-bit files read back as written, streamed writes equal one-shot
//! ones, and bad samples are refused.

mod audio_support;

use audio_support::*;
use tessera_codec::audio::{
    AudioBuffer, ChannelMode, WavFormat, WavWriter, probe, read_audio, write_wav,
};

fn stereo_tone(rate: u32, n: usize) -> AudioBuffer {
    AudioBuffer::new(
        rate,
        vec![sine(440.0, rate, n, 0.5), sine(660.0, rate, n, 0.25)],
    )
    .unwrap()
}

#[test]
fn float_wav_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f32.wav");
    let mut buf = stereo_tone(24_000, 5000).into_channels();
    buf[0][10] = 1.75; // float files keep values beyond full scale
    let buf = AudioBuffer::new(24_000, buf).unwrap();
    assert_eq!(WavFormat::default(), WavFormat::F32);
    write_wav(&path, &buf, WavFormat::F32).unwrap();

    let info = probe(&path).unwrap();
    assert_eq!(info.codec, "pcm_f32le");
    assert_eq!(
        (info.sample_rate, info.channels, info.frames),
        (24_000, 2, Some(5000))
    );
    assert_eq!(read_audio(&path, ChannelMode::Keep).unwrap(), buf);
}

#[test]
fn pcm16_wav_is_within_half_a_step_and_clips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s16.wav");
    let mut channels = stereo_tone(16_000, 4000).into_channels();
    channels[1][7] = 1.5;
    channels[1][8] = -3.0;
    let buf = AudioBuffer::new(16_000, channels).unwrap();

    let mut writer = WavWriter::create(&path, 16_000, 2, WavFormat::Pcm16).unwrap();
    writer.write_chunk(buf.channels()).unwrap();
    assert_eq!(writer.clipped_samples(), 2);
    assert_eq!(writer.frames_written(), 4000);
    writer.finalize().unwrap();

    let info = probe(&path).unwrap();
    assert_eq!(info.codec, "pcm_s16le");
    assert_eq!(info.bits_per_sample, Some(16));
    let back = read_audio(&path, ChannelMode::Keep).unwrap();
    assert_eq!(back.n_frames(), 4000);
    for c in 0..2 {
        for (i, (&a, &b)) in back.channel(c).iter().zip(buf.channel(c)).enumerate() {
            let expected = b.clamp(-1.0, 32767.0 / 32768.0);
            assert!(
                (a - expected).abs() <= 0.5 / 32768.0 + 1e-9,
                "ch {c} frame {i}: {a} vs {b}"
            );
        }
    }
    assert_eq!(back.channel(1)[7], 32767.0 / 32768.0);
    assert_eq!(back.channel(1)[8], -1.0);

    // Writing what 16-bit decoding gave is lossless.
    let again = dir.path().join("again.wav");
    write_wav(&again, &back, WavFormat::Pcm16).unwrap();
    assert_eq!(read_audio(&again, ChannelMode::Keep).unwrap(), back);
}

#[test]
fn streamed_writes_equal_a_one_shot_write() {
    let dir = tempfile::tempdir().unwrap();
    let buf = stereo_tone(22_050, 10_000);
    for format in [WavFormat::F32, WavFormat::Pcm16] {
        let one_shot = dir.path().join("one.wav");
        let streamed = dir.path().join("streamed.wav");
        write_wav(&one_shot, &buf, format).unwrap();
        let mut writer = WavWriter::create(&streamed, 22_050, 2, format).unwrap();
        let mut at = 0;
        for len in [0, 1, 999, 4000, 5000] {
            let chunk: Vec<&[f32]> = buf.channels().iter().map(|c| &c[at..at + len]).collect();
            writer.write_chunk(&chunk).unwrap();
            at += len;
        }
        assert_eq!(at, 10_000);
        writer.finalize().unwrap();
        assert_eq!(
            std::fs::read(&one_shot).unwrap(),
            std::fs::read(&streamed).unwrap()
        );
    }
}

#[test]
fn bad_samples_and_shapes_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.wav");
    let mut writer = WavWriter::create(&path, 16_000, 2, WavFormat::F32).unwrap();
    writer
        .write_chunk(&[vec![0.0f32; 5], vec![0.0; 5]])
        .unwrap();
    let mut right = vec![0.0f32; 5];
    right[3] = f32::NAN;
    let reason = file_error(writer.write_chunk(&[vec![0.0f32; 5], right]), &path);
    assert!(reason.contains("frame 8, channel 1"), "{reason}");
    file_error(writer.write_chunk(&[vec![0.0f32; 5]]), &path);
    file_error(writer.write_chunk(&[vec![0.0f32; 5], vec![0.0; 4]]), &path);
    assert_eq!(writer.frames_written(), 5);
    writer.finalize().unwrap();
    assert_eq!(probe(&path).unwrap().frames, Some(5));

    file_error(WavWriter::create(&path, 16_000, 0, WavFormat::F32), &path);
    file_error(WavWriter::create(&path, 0, 1, WavFormat::F32), &path);
    let missing_dir = dir.path().join("no/such/dir/out.wav");
    file_error(
        WavWriter::create(&missing_dir, 16_000, 1, WavFormat::F32),
        &missing_dir,
    );
}
