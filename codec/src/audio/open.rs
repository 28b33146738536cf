//! Opening a file with symphonia: probing the container, choosing the audio track, making the
//! decoder, reading what the header states, and wording symphonia's errors as one-line reasons.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use symphonia::core::codecs::audio::well_known as codec_ids;
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoder};
use symphonia::core::codecs::audio::{AudioDecoderOptions, CODEC_ID_NULL_AUDIO};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, Track, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{Duration, TimeBase};
use tessera_core::{Error, Result};

use super::info::AudioInfo;

pub(super) fn probe_format(path: &Path) -> Result<Box<dyn FormatReader>> {
    let file = open_file(path)?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = guard(path, || {
        symphonia::default::get_probe().probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
    })?;
    probed.map_err(|e| Error::file(path, probe_reason(&e)))
}

/// PCM and FLAC headers state the exact frame count; other codecs may round it to packets.
pub(super) fn is_exact_count_codec(codec: &str) -> bool {
    codec.starts_with("pcm_") || codec == "flac"
}

/// What the header says, before any decoding. Rate and channels are 0 when it does not say.
pub(super) fn header_info(
    path: &Path,
    format: &dyn FormatReader,
    track: &Track,
    params: &AudioCodecParameters,
    decoder: &dyn AudioDecoder,
) -> AudioInfo {
    let codec = decoder.codec_info().short_name.to_string();
    // Containers fill in a bit depth for lossy codecs too (Matroska); it means nothing there.
    let lossless = is_exact_count_codec(&codec) || codec == "alac";
    let bits_per_sample = params
        .bits_per_sample
        .or(decoder.codec_params().bits_per_sample)
        .filter(|&b| b > 0 && lossless);
    let format_name = format.format_info().short_name;
    let (mut frames, duration_s) = declared_length(track, format, params.sample_rate);
    // ADTS, and MPEG audio without a LAME header, only have symphonia's estimate from the
    // bitrate of the first frames: keep it as a duration, but do not present it as a count
    // (nor hold the decoded length to it).
    let mpeg_without_lame = matches!(format_name, "mp1" | "mp2" | "mp3") && track.delay.is_none();
    if mpeg_without_lame || format_name == "aac" {
        frames = None;
    }
    AudioInfo {
        path: path.to_path_buf(),
        format: format_name.to_string(),
        codec,
        sample_rate: params.sample_rate.unwrap_or(0),
        channels: params.channels.as_ref().map_or(0, |c| c.count()),
        frames,
        duration_s,
        bits_per_sample,
    }
}

fn open_file(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::file(path, io_reason(&e)))?;
    if meta.is_dir() {
        return Err(Error::file(path, "is a directory, not an audio file"));
    }
    if meta.len() == 0 {
        return Err(Error::file(path, "file is empty"));
    }
    File::open(path).map_err(|e| Error::file(path, io_reason(&e)))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => format!("cannot open: {e}"),
    }
}

fn probe_reason(e: &SymError) -> String {
    match e {
        SymError::Unsupported(_) => {
            "not a recognised audio file (no supported container format found)".to_string()
        }
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "truncated: the file ends inside its header".to_string()
        }
        SymError::IoError(io) => format!("read error: {io}"),
        SymError::DecodeError(msg) => format!("malformed header: {msg}"),
        other => format!("cannot read the header: {other}"),
    }
}

/// The default audio track, else the first audio track whose codec is known.
pub(super) fn pick_track(format: &dyn FormatReader) -> Option<&Track> {
    format
        .default_track(TrackType::Audio)
        .or_else(|| format.first_track_known_codec(TrackType::Audio))
}

pub(super) fn make_decoder(
    path: &Path,
    params: &AudioCodecParameters,
) -> Result<Box<dyn AudioDecoder>> {
    if params.codec == CODEC_ID_NULL_AUDIO {
        return Err(Error::file(
            path,
            "the audio track's codec is not identified",
        ));
    }
    let made = guard(path, || {
        symphonia::default::get_codecs().make_audio_decoder(params, &AudioDecoderOptions::default())
    })?;
    made.map_err(|e| match e {
        SymError::Unsupported(_)
            if symphonia::default::get_codecs()
                .get_audio_decoder(params.codec)
                .is_none() =>
        {
            Error::file(
                path,
                format!(
                    "unsupported codec {} (symphonia has no decoder for it)",
                    codec_name(params.codec)
                ),
            )
        }
        other => Error::file(path, format!("cannot set up the decoder: {other}")),
    })
}

/// Names for codecs that symphonia can demux but not decode, so the error says what it is.
fn codec_name(id: AudioCodecId) -> String {
    let known = [
        (codec_ids::CODEC_ID_OPUS, "opus"),
        (codec_ids::CODEC_ID_SPEEX, "speex"),
        (codec_ids::CODEC_ID_MUSEPACK, "musepack"),
        (codec_ids::CODEC_ID_AC3, "ac3"),
        (codec_ids::CODEC_ID_EAC3, "eac3"),
        (codec_ids::CODEC_ID_AC4, "ac4"),
        (codec_ids::CODEC_ID_DCA, "dts"),
        (codec_ids::CODEC_ID_WMA, "wma"),
        (codec_ids::CODEC_ID_ATRAC3, "atrac3"),
        (codec_ids::CODEC_ID_ATRAC3PLUS, "atrac3plus"),
        (codec_ids::CODEC_ID_WAVPACK, "wavpack"),
        (codec_ids::CODEC_ID_MONKEYS_AUDIO, "monkeys-audio"),
        (codec_ids::CODEC_ID_TTA, "tta"),
        (codec_ids::CODEC_ID_TRUEHD, "truehd"),
        (codec_ids::CODEC_ID_SBC, "sbc"),
    ];
    known
        .iter()
        .find(|(known_id, _)| *known_id == id)
        .map_or_else(|| format!("with id {id}"), |(_, name)| name.to_string())
}

/// The frame count and duration that the container states, without decoding.
fn declared_length(
    track: &Track,
    format: &dyn FormatReader,
    sample_rate: Option<u32>,
) -> (Option<u64>, Option<f64>) {
    let seconds =
        |tb: Option<TimeBase>, dur: Option<Duration>| Some(tb?.calc_duration(dur?)?.as_secs_f64());
    let frames = track.num_frames;
    let duration_s = match (frames, sample_rate) {
        (Some(n), Some(rate)) if rate > 0 => Some(n as f64 / f64::from(rate)),
        _ => seconds(track.time_base, track.duration).or_else(|| {
            let media = format.media_info();
            seconds(media.time_base, media.duration)
        }),
    };
    (frames, duration_s)
}

/// Runs a symphonia call, turning a panic on malformed data into an error about the file.
pub(super) fn guard<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        Error::file(
            path,
            "corrupt data: the decoder failed on malformed input (internal panic caught)",
        )
    })
}
