//! `tessera decode CODES -o OUT.wav [--codec ID|DIR]`
//!
//! The codes go through the codec's decode stream a few frames at a time and the audio is
//! written to the WAV file as it comes: memory does not grow with the length of the audio, and
//! the samples are those of whole-file decoding (trimmed to the original length).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde_json::json;
use tessera_codec::audio::{WavFormat, WavWriter};
use tessera_codec::codec::{AudioCodec, DecodeOptions, Noise, check_codes_match};
use tessera_codec::registry;
use tessera_core::{Codes, Error, Result};

use crate::GlobalArgs;
use crate::log::{note, verbose};
use crate::output;
use crate::progress::Progress;

/// Level-0 frames per push: small against any file, large enough to keep per-call overheads
/// out of the way.
const FRAMES_PER_PUSH: usize = 64;

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// A codes file written by `tessera encode`.
    #[arg(value_name = "CODES")]
    input: PathBuf,

    /// Where to write the audio (WAV, 32-bit float unless --pcm16).
    #[arg(short, long, value_name = "OUT.wav")]
    output: PathBuf,

    /// Codec id or checkpoint directory; default: the tokenizer named in the codes file.
    #[arg(long, value_name = "ID|DIR")]
    codec: Option<String>,

    /// Seed for decoders that add noise (SNAC): the same codes and seed give the same audio.
    #[arg(long, value_name = "S", conflicts_with = "no_noise")]
    seed: Option<u64>,

    /// Turn a decoder's noise injection off (deterministic output).
    #[arg(long)]
    no_noise: bool,

    /// Write 16-bit PCM instead of 32-bit float.
    #[arg(long)]
    pcm16: bool,

    /// Print a JSON summary (duration, real-time factor) on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &DecodeArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    let input = &args.input;
    let codes = match Codes::load(input) {
        Ok(c) => c,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let spec = match &args.codec {
        Some(s) => s.clone(),
        None => {
            let id = codes.meta().tokenizer.clone();
            if registry::find(&id).is_none() {
                output::input_error(
                    input,
                    Error::invalid(format!(
                        "made by '{id}', which is not a registered codec id; pass --codec DIR \
                         with the checkpoint that made it"
                    )),
                );
                return Ok(1);
            }
            id
        }
    };
    let device = global.device.open()?;
    let download_progress = std::io::stderr().is_terminal() && !global.quiet;
    verbose!("loading codec {spec}");
    let codec = registry::load_codec(&spec, &device, download_progress)?;
    if let Err(e) = check_codes_match(codec.as_ref(), &codes) {
        output::input_error(input, e);
        return Ok(1);
    }
    let noise = match (args.no_noise, args.seed) {
        (true, _) => Noise::Off,
        (false, Some(s)) => Noise::Seeded(s),
        (false, None) => Noise::Random,
    };
    let format = if args.pcm16 {
        WavFormat::Pcm16
    } else {
        WavFormat::F32
    };
    let t0 = Instant::now();
    let written = match decode_to_wav(
        codec.as_ref(),
        &codes,
        &DecodeOptions { noise },
        &args.output,
        format,
    ) {
        Ok(n) => n,
        Err(e) => {
            // No half-written file is left to be mistaken for a result.
            let _ = std::fs::remove_file(&args.output);
            let e = match e {
                Error::File { .. } => e,
                other => other.with_path(input),
            };
            output::error_line(&e);
            return Ok(1);
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let duration = written as f64 / f64::from(codec.sample_rate());
    let rtf = duration / seconds.max(1e-9);
    note!(
        "wrote {} ({duration:.2} s at {} Hz) in {seconds:.2} s ({rtf:.1}x real time)",
        args.output.display(),
        codec.sample_rate()
    );
    if args.json {
        output::json_line(&json!({
            "input": input.display().to_string(),
            "output": args.output.display().to_string(),
            "codec": codec.id(),
            "duration_s": duration,
            "n_samples": written,
            "sample_rate": codec.sample_rate(),
            "seconds": seconds,
            "real_time_factor": rtf,
        }))?;
    }
    Ok(0)
}

/// Streams the codes through the codec into a WAV file, trimmed to the original length the
/// metadata records. Returns the frames written.
fn decode_to_wav(
    codec: &dyn AudioCodec,
    codes: &Codes,
    opts: &DecodeOptions,
    path: &Path,
    format: WavFormat,
) -> Result<usize> {
    let levels = codes.levels();
    let frames0 = levels.first().map_or(0, |l| l.dims()[1]);
    let mut stream = codec.decode_stream(opts, Some(frames0))?;
    let mut writer = WavWriter::create(path, codec.sample_rate(), codec.channels(), format)?;
    let limit = codes.meta().n_samples.map(|n| n as usize);
    let rate = f64::from(codec.sample_rate());
    let total_s = limit.map(|n| n as f64 / rate);
    let progress = Progress::new(total_s);
    let mut decoded = 0;
    let mut write = |audio: Option<Tensor>, writer: &mut WavWriter| -> Result<()> {
        let Some(audio) = audio else {
            return Ok(());
        };
        let n = audio.dims()[1];
        let keep = limit.map_or(n, |l| n.min(l.saturating_sub(decoded)));
        if keep > 0 {
            let planar: Vec<Vec<f32>> =
                audio.narrow(1, 0, keep)?.to_dtype(DType::F32)?.to_vec2()?;
            writer.write_chunk(&planar)?;
        }
        decoded += n;
        progress.set(decoded.min(limit.unwrap_or(usize::MAX)) as f64 / rate);
        Ok(())
    };
    let mut at = 0;
    while at < frames0 {
        let end = (at + FRAMES_PER_PUSH).min(frames0);
        // Finer levels go along in proportion (SNAC's have 2x, 4x, ... the frames of level 0).
        let piece = levels
            .iter()
            .map(|l| {
                let t = l.dims()[1];
                let (a, b) = (at * t / frames0, end * t / frames0);
                l.narrow(1, a, b - a)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let out = stream.push(&piece)?;
        write(out, &mut writer)?;
        at = end;
    }
    let out = stream.finish()?;
    write(out, &mut writer)?;
    progress.finish();
    if let Some(n) = limit
        && n > decoded
    {
        return Err(Error::invalid(format!(
            "the codes decode to {decoded} samples but the metadata says the audio had {n}"
        )));
    }
    let written = writer.frames_written() as usize;
    writer.finalize()?;
    Ok(written)
}
