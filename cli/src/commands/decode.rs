//! `tessera decode CODES -o OUT.wav [--codec ID|DIR]`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use tessera_codec::audio::{AudioBuffer, WavFormat, write_wav};
use tessera_codec::codec::{DecodeOptions, Noise, decode_codes};
use tessera_codec::registry;
use tessera_core::{Codes, Error};

use crate::GlobalArgs;
use crate::log::{note, verbose};
use crate::output;

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
    let progress = std::io::stderr().is_terminal() && !global.quiet;
    verbose!("loading codec {spec}");
    let codec = registry::load_codec(&spec, &device, progress)?;
    let noise = match (args.no_noise, args.seed) {
        (true, _) => Noise::Off,
        (false, Some(s)) => Noise::Seeded(s),
        (false, None) => Noise::Random,
    };
    let t0 = Instant::now();
    let audio = match decode_codes(codec.as_ref(), &codes, &DecodeOptions { noise }) {
        Ok(a) => a,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let channels: Vec<Vec<f32>> = audio.to_dtype(candle_core::DType::F32)?.to_vec2()?;
    let buffer = AudioBuffer::new(codec.sample_rate(), channels)?;
    let format = if args.pcm16 {
        WavFormat::Pcm16
    } else {
        WavFormat::F32
    };
    write_wav(&args.output, &buffer, format)?;
    let duration = buffer.duration_s();
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
            "n_samples": buffer.n_frames(),
            "sample_rate": codec.sample_rate(),
            "seconds": seconds,
            "real_time_factor": rtf,
        }))?;
    }
    Ok(0)
}
