//! Decoding with symphonia: hands out one decoded packet at a time as planar f32, with every
//! failure turned into a one-line `Error::File` (opening the file is in `open.rs`).
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

use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::AudioDecoder;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatReader;
use symphonia::core::units::TimeBase;
use tessera_core::{Error, Result};

use super::buffer::{first_non_finite, sample_rate_in_range, sample_rate_range_text};
use super::info::AudioInfo;
use super::open::{
    guard, header_info, is_exact_count_codec, make_decoder, pick_track, probe_format,
};

pub(crate) struct Source {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    info: AudioInfo,
    /// Packet durations are in frames, so a packet's `dur` can trim decoder output past the
    /// end of the stream (AAC in MP4 decodes whole 1024-frame blocks).
    packet_dur_in_frames: bool,
    /// The header's frame count is exact, not rounded to whole packets.
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
        let format = probe_format(path)?;
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
        let info = header_info(path, format.as_ref(), &track, &params, decoder.as_ref());

        let mut source = Source {
            path: path.to_path_buf(),
            track_id: track.id,
            packet_dur_in_frames: false,
            exact_frame_count: is_exact_count_codec(&info.codec),
            skip_corrupt,
            skipped_packets: 0,
            skipped_frames: 0,
            frames_out: 0,
            largest_packet: 0,
            finished: false,
            block: Vec::new(),
            held: false,
            info,
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

            let decoded = guard(&self.path, || {
                self.decoder.decode(&packet).map(|buf| {
                    buf.copy_to_vecs_planar::<f32>(&mut self.block);
                    (buf.spec().rate(), buf.spec().channels().count())
                })
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
