//! The one place that talks to symphonia: open and probe a file, pick its audio track, make a
//! decoder, and hand out one decoded packet at a time as planar f32, with every failure turned
//! into a one-line `Error::File`.
//!
//! Policy (documented in docs/audio-io.md):
//! - a packet that fails to decode is an error (strict, the default) or is skipped and counted
//!   (`skip_corrupt`); a dataset job wants the clear error, a player would want the skip;
//! - the demuxer running out of data inside a packet, or the stream ending more than one packet
//!   short of the frame count that the header declares, is reported as truncation;
//! - `ResetRequired` from the demuxer (chained Ogg streams) re-creates the decoder and goes on
//!   when the new stream has the same rate and channel count, and fails otherwise;
//! - NaN or infinite samples fail with the position of the first one;
//! - a panic inside symphonia on malformed data is caught and reported as corrupt data.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

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

use super::buffer::{first_non_finite, sample_rate_in_range, sample_rate_range_text};
use super::info::AudioInfo;

pub(crate) struct Source {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    info: AudioInfo,
    /// Packet durations are in frames, so a packet's `dur` can trim decoder output past the
    /// end of the stream (AAC in MP4 decodes whole 1024-frame blocks).
    packet_dur_in_frames: bool,
    /// PCM and FLAC headers state the exact frame count; other codecs may round it to packets.
    exact_frame_count: bool,
    skip_corrupt: bool,
    skipped_packets: u64,
    /// Frames that the skipped packets would have held, as far as the container says.
    skipped_frames: u64,
    frames_out: u64,
    largest_packet: u64,
    finished: bool,
    /// Samples of the current packet, planar, in the file's channel layout.
    block: Vec<Vec<f32>>,
    /// A decoded packet that is waiting to be handed out (decoded early to learn the format).
    held: bool,
}

impl Source {
    pub(crate) fn open(path: &Path, skip_corrupt: bool) -> Result<Source> {
        let file = open_file(path)?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = guard(path, || {
            symphonia::default::get_probe().probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        })?
        .map_err(|e| Error::file(path, probe_reason(&e)))?;

        let track = pick_track(format.as_ref())
            .cloned()
            .ok_or_else(|| Error::file(path, "no audio track"))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .cloned()
            .ok_or_else(|| Error::file(path, "no audio track"))?;
        let decoder = make_decoder(path, &params)?;
        let codec = decoder.codec_info().short_name.to_string();
        let exact_frame_count = codec.starts_with("pcm_") || codec == "flac";
        // Containers fill in a bit depth for lossy codecs too (Matroska); it means nothing there.
        let lossless = exact_frame_count || codec == "alac";
        let bits_per_sample = params
            .bits_per_sample
            .or(decoder.codec_params().bits_per_sample)
            .filter(|&b| b > 0 && lossless);
        let format_name = format.format_info().short_name;
        let (mut frames, duration_s) = declared_length(&track, format.as_ref(), params.sample_rate);
        // ADTS, and MPEG audio without a LAME header, only have symphonia's estimate from the
        // bitrate of the first frames: keep it as a duration, but do not present it as a count
        // (nor hold the decoded length to it).
        let mpeg_without_lame =
            matches!(format_name, "mp1" | "mp2" | "mp3") && track.delay.is_none();
        if mpeg_without_lame || format_name == "aac" {
            frames = None;
        }

        let mut source = Source {
            path: path.to_path_buf(),
            track_id: track.id,
            packet_dur_in_frames: false,
            exact_frame_count,
            skip_corrupt,
            skipped_packets: 0,
            skipped_frames: 0,
            frames_out: 0,
            largest_packet: 0,
            finished: false,
            block: Vec::new(),
            held: false,
            info: AudioInfo {
                path: path.to_path_buf(),
                format: format_name.to_string(),
                codec,
                sample_rate: params.sample_rate.unwrap_or(0),
                channels: params.channels.as_ref().map_or(0, |c| c.count()),
                frames,
                duration_s,
                bits_per_sample,
            },
            format,
            decoder,
        };

        if params.sample_rate.is_none() || params.channels.is_none() {
            // Some containers leave the format to the bitstream: decode the first packet to learn
            // it, and keep its samples for the first read.
            source.learn_format_from_first_packet()?;
        }
        source.check_format()?;
        source.packet_dur_in_frames =
            track.time_base == TimeBase::try_from_recip(source.info.sample_rate);
        if source.info.duration_s.is_none() {
            source.info.duration_s = source
                .info
                .frames
                .map(|n| n as f64 / f64::from(source.info.sample_rate));
        }
        Ok(source)
    }

    pub(crate) fn info(&self) -> &AudioInfo {
        &self.info
    }

    pub(crate) fn skipped_packets(&self) -> u64 {
        self.skipped_packets
    }

    /// Frames handed out so far.
    pub(crate) fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Decodes the next packet of the track. Returns its samples (planar, the file's channels,
    /// possibly zero frames), or `None` at the end of the stream.
    pub(crate) fn next_block(&mut self) -> Result<Option<&[Vec<f32>]>> {
        if self.held {
            self.held = false;
            self.frames_out += self.block_frames() as u64;
            return Ok(Some(&self.block));
        }
        if self.finished {
            return Ok(None);
        }
        if !self.decode_next()? {
            self.finished = true;
            self.check_complete()?;
            return Ok(None);
        }
        self.frames_out += self.block_frames() as u64;
        Ok(Some(&self.block))
    }

    fn block_frames(&self) -> usize {
        self.block.first().map_or(0, Vec::len)
    }

    /// Reads packets until one of our track decodes; fills `self.block`. False at the end.
    fn decode_next(&mut self) -> Result<bool> {
        loop {
            let next = guard(&self.path, || self.format.next_packet())?;
            let packet = match next {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(false),
                Err(SymError::ResetRequired) => {
                    self.restart_after_reset()?;
                    continue;
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    if self.info.frames.is_none() {
                        // Without a declared length, running out of bytes is how the stream ends.
                        return Ok(false);
                    }
                    return Err(self.fail(format!(
                        "truncated: the data ends inside a packet after {}",
                        self.position_text(self.frames_out)
                    )));
                }
                Err(e) => {
                    return Err(self.fail(format!(
                        "corrupt container data after {}: {e}",
                        self.position_text(self.frames_out)
                    )));
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }

            let decoded = guard(&self.path, || match self.decoder.decode(&packet) {
                Ok(buf) => {
                    let spec = buf.spec();
                    let format = (spec.rate(), spec.channels().count());
                    buf.copy_to_vecs_planar::<f32>(&mut self.block);
                    Ok(format)
                }
                Err(e) => Err(e),
            })?;
            let (rate, channels) = match decoded {
                Ok(format) => format,
                Err(SymError::DecodeError(_) | SymError::IoError(_)) if self.skip_corrupt => {
                    self.skipped_packets += 1;
                    self.skipped_frames += if self.packet_dur_in_frames {
                        packet.dur.get()
                    } else {
                        self.largest_packet
                    };
                    continue;
                }
                Err(e) => {
                    return Err(self.fail(format!(
                        "corrupt data at {}: {e}",
                        self.position_text(self.frames_out)
                    )));
                }
            };
            if self.info.sample_rate == 0 {
                self.info.sample_rate = rate;
            }
            if self.info.channels == 0 {
                self.info.channels = channels;
            }
            if rate != self.info.sample_rate || channels != self.info.channels {
                return Err(self.fail(format!(
                    "the stream changes format at {} ({} -> {})",
                    self.position_text(self.frames_out),
                    layout_text(self.info.sample_rate, self.info.channels),
                    layout_text(rate, channels)
                )));
            }

            let mut frames = self.block_frames() as u64;
            self.largest_packet = self.largest_packet.max(frames).max(packet.dur.get());
            if self.packet_dur_in_frames && packet.dur.get() > 0 && frames > packet.dur.get() {
                frames = packet.dur.get();
                self.block
                    .iter_mut()
                    .for_each(|c| c.truncate(frames as usize));
            }
            if let Some((frame, channel, value)) = first_non_finite(&self.block) {
                let at = self.frames_out + frame as u64;
                return Err(self.fail(format!(
                    "sample at frame {at} ({:.4} s), channel {channel} is {}",
                    self.seconds(at),
                    if value.is_nan() { "NaN" } else { "infinite" }
                )));
            }
            return Ok(true);
        }
    }

    fn learn_format_from_first_packet(&mut self) -> Result<()> {
        while self.decode_next()? {
            if self.block_frames() > 0 {
                self.held = true;
                return Ok(());
            }
        }
        Err(self.fail("the stream holds no decodable audio"))
    }

    fn check_format(&self) -> Result<()> {
        if self.info.channels == 0 {
            return Err(self.fail("the stream has no audio channels"));
        }
        if !sample_rate_in_range(self.info.sample_rate) {
            return Err(self.fail(format!(
                "sample rate {} Hz is outside the supported {}",
                self.info.sample_rate,
                sample_rate_range_text()
            )));
        }
        Ok(())
    }

    /// A chained Ogg stream starts a new logical stream: make a decoder for it if it keeps the
    /// format, since the samples then continue one signal.
    fn restart_after_reset(&mut self) -> Result<()> {
        let track = pick_track(self.format.as_ref()).cloned();
        let params = track
            .as_ref()
            .and_then(|t| t.codec_params.as_ref())
            .and_then(|p| p.audio())
            .cloned();
        let (Some(track), Some(params)) = (track, params) else {
            return Err(self.fail("a chained stream has no audio track"));
        };
        let rate = params.sample_rate.unwrap_or(self.info.sample_rate);
        let channels = params
            .channels
            .as_ref()
            .map_or(self.info.channels, |c| c.count());
        if rate != self.info.sample_rate || channels != self.info.channels {
            return Err(self.fail(format!(
                "a chained stream at {} changes format ({} -> {})",
                self.position_text(self.frames_out),
                layout_text(self.info.sample_rate, self.info.channels),
                layout_text(rate, channels)
            )));
        }
        self.decoder = make_decoder(&self.path, &params)?;
        self.track_id = track.id;
        // The total of a chain is not in any one header.
        self.info.frames = None;
        Ok(())
    }

    fn check_complete(&self) -> Result<()> {
        let Some(declared) = self.info.frames else {
            return Ok(());
        };
        let slack = if self.exact_frame_count {
            0
        } else {
            self.largest_packet
        };
        if self.frames_out + self.skipped_frames + slack < declared {
            return Err(self.fail(format!(
                "truncated or corrupt: the header declares {declared} frames but only {} decode",
                self.count_text(self.frames_out)
            )));
        }
        Ok(())
    }

    fn seconds(&self, frame: u64) -> f64 {
        frame as f64 / f64::from(self.info.sample_rate.max(1))
    }

    fn position_text(&self, frame: u64) -> String {
        format!("frame {frame} ({:.3} s)", self.seconds(frame))
    }

    fn count_text(&self, frames: u64) -> String {
        format!("{frames} ({:.3} s)", self.seconds(frames))
    }

    fn fail(&self, reason: impl std::fmt::Display) -> Error {
        Error::file(&self.path, reason)
    }
}

fn layout_text(rate: u32, channels: usize) -> String {
    let plural = if channels == 1 { "" } else { "s" };
    format!("{rate} Hz, {channels} channel{plural}")
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
fn pick_track(format: &dyn FormatReader) -> Option<&Track> {
    format
        .default_track(TrackType::Audio)
        .or_else(|| format.first_track_known_codec(TrackType::Audio))
}

fn make_decoder(path: &Path, params: &AudioCodecParameters) -> Result<Box<dyn AudioDecoder>> {
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
fn guard<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        Error::file(
            path,
            "corrupt data: the decoder failed on malformed input (internal panic caught)",
        )
    })
}
