//! `tessera encode AUDIO --codec ID|DIR -o OUT.safetensors`
//!
//! The file is decoded chunk by chunk, resampled as it goes and fed to the codec's encode
//! stream: memory does not grow with the length of the file (only the codes do, a few bytes per
//! frame), and the codes are exactly those of whole-file encoding.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use serde_json::json;
use tessera_codec::audio::ResamplingReader;
use tessera_codec::codec::{AudioCodec, EncodeOptions, clip_for_codec, codes_meta, read_mode};
use tessera_codec::registry;
use tessera_core::{Codes, Result};

use crate::GlobalArgs;
use crate::log::{note, verbose};
use crate::output;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// Audio file in any format tessera decodes; resampled to the codec's rate and mixed to its
    /// channel count.
    #[arg(value_name = "AUDIO")]
    input: PathBuf,

    /// Codec id (see `tessera codecs`; weights come from the Hugging Face cache, downloaded
    /// if needed) or a local checkpoint directory in the repository's layout.
    #[arg(long, value_name = "ID|DIR")]
    codec: String,

    /// Where to write the codes (a safetensors file, see docs/codes-format.md).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,

    /// Codebooks to keep per level (residual depth / bandwidth); default: the codec's own
    /// default (all for SNAC and DAC, 8 for Mimi, the first bandwidth for EnCodec).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    n_q: Option<u32>,

    /// Print a JSON summary (duration, frames, real-time factor) on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EncodeArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    let device = global.device.open()?;
    let download_progress = std::io::stderr().is_terminal() && !global.quiet;
    verbose!("loading codec {}", args.codec);
    let t_load = Instant::now();
    let codec = registry::load_codec(&args.codec, &device, download_progress)?;
    verbose!(
        "codec {} loaded in {:.2} s",
        codec.id(),
        t_load.elapsed().as_secs_f64()
    );

    let input = &args.input;
    let reader = match ResamplingReader::open(input, codec.sample_rate(), read_mode(codec.as_ref()))
    {
        Ok(r) => r,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let total_s = reader.info().duration_s;
    note!(
        "encoding {}{} with {}",
        input.display(),
        total_s.map_or(String::new(), |t| format!(" ({t:.2} s)")),
        codec.id()
    );
    let opts = EncodeOptions {
        n_q: args.n_q.map(|q| q as usize),
    };
    let t0 = Instant::now();
    let (levels, n) = match encode_file(codec.as_ref(), reader, &opts, total_s) {
        Ok(r) => r,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let codes = Codes::new(levels, codes_meta(codec.as_ref(), n))?;
    codes.save(&args.output)?;
    let duration = n as f64 / f64::from(codec.sample_rate());
    let rtf = duration / seconds.max(1e-9);
    note!(
        "wrote {}: levels {:?} in {seconds:.2} s ({rtf:.1}x real time)",
        args.output.display(),
        codes.shapes()
    );
    if args.json {
        output::json_line(&json!({
            "input": input.display().to_string(),
            "output": args.output.display().to_string(),
            "codec": codec.id(),
            "duration_s": duration,
            "n_samples": n,
            "levels": codes.shapes(),
            "frame_rates": codes.meta().frame_rates,
            "seconds": seconds,
            "real_time_factor": rtf,
        }))?;
    }
    Ok(0)
}

/// Seconds of audio per push to the encode stream.
const PUSH_SECONDS: f64 = 4.0;

/// Streams the file through the codec. Returns the codes `[n_q, T_k]` of each level and the
/// number of samples (at the codec's rate) encoded.
fn encode_file(
    codec: &dyn AudioCodec,
    mut reader: ResamplingReader,
    opts: &EncodeOptions,
    total_s: Option<f64>,
) -> Result<(Vec<Tensor>, usize)> {
    let mut stream = codec.encode_stream(opts)?;
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); codec.levels().len()];
    let mut keep = |out: Option<Vec<Tensor>>| {
        for (k, level) in out.into_iter().flatten().enumerate() {
            parts[k].push(level);
        }
    };
    let progress = Progress::new(total_s);
    let rate = f64::from(codec.sample_rate());
    // The reader's chunks (about 0.7 s) are gathered into pieces of PUSH_SECONDS before they
    // go to the stream: its codes do not depend on how the signal is cut (`EncodeStream`), and
    // each push has a fixed cost (a transformer step, the convs' jobs), which at 0.7 s made
    // Mimi's CLI encode about half as fast. Memory still does not grow with the file.
    let push_frames = (PUSH_SECONDS * rate) as usize;
    let mut pending: Vec<Vec<f32>> = Vec::new();
    let mut n = 0;
    let mut push = |pending: &mut Vec<Vec<f32>>| -> Result<Option<Vec<Tensor>>> {
        let channels = std::mem::take(pending);
        let frames = channels.first().map_or(0, Vec::len);
        if frames == 0 {
            return Ok(None);
        }
        stream.push(&clip_for_codec(codec, channels, frames)?)
    };
    while let Some(chunk) = reader.next_chunk()? {
        n += chunk.n_frames();
        if pending.is_empty() {
            pending = chunk.channels;
        } else {
            for (p, c) in pending.iter_mut().zip(&chunk.channels) {
                p.extend_from_slice(c);
            }
        }
        if pending.first().map_or(0, Vec::len) >= push_frames {
            keep(push(&mut pending)?);
        }
        progress.set(n as f64 / rate);
    }
    keep(push(&mut pending)?);
    keep(stream.finish()?);
    progress.finish();
    let levels = parts
        .into_iter()
        .map(|p| Tensor::cat(&p, 1))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((levels, n))
}
