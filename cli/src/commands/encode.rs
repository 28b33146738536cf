//! `tessera encode AUDIO --codec ID|DIR -o OUT.safetensors`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use serde_json::json;
use tessera_codec::audio::{ChannelMode, load_audio};
use tessera_codec::codec::{EncodeOptions, encode_to_codes};
use tessera_codec::registry;
use tessera_core::Error;

use crate::GlobalArgs;
use crate::log::{note, verbose};
use crate::output;

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

    /// Codebooks to keep per level (residual depth / bandwidth); default: all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    n_q: Option<u32>,

    /// Print a JSON summary (duration, frames, real-time factor) on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EncodeArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    let device = global.device.open()?;
    let progress = std::io::stderr().is_terminal() && !global.quiet;
    verbose!("loading codec {}", args.codec);
    let t_load = Instant::now();
    let codec = registry::load_codec(&args.codec, &device, progress)?;
    verbose!(
        "codec {} loaded in {:.2} s",
        codec.id(),
        t_load.elapsed().as_secs_f64()
    );

    let mode = if codec.channels() == 1 {
        ChannelMode::Mono
    } else {
        ChannelMode::Keep
    };
    let input = &args.input;
    let audio = match load_audio(input, codec.sample_rate(), mode) {
        Ok(a) => a,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let samples = match to_codec_channels(audio.channels(), codec.channels()) {
        Ok(c) => c,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let n = audio.n_frames();
    let duration = audio.duration_s();
    note!(
        "encoding {} ({duration:.2} s) with {}",
        input.display(),
        codec.id()
    );
    let flat: Vec<f32> = samples.concat();
    let clip = Tensor::from_vec(flat, (samples.len(), n), &candle_core::Device::Cpu)?;
    let t0 = Instant::now();
    let opts = EncodeOptions {
        n_q: args.n_q.map(|q| q as usize),
    };
    let codes = match encode_to_codes(codec.as_ref(), &clip, codec.sample_rate(), &opts) {
        Ok(c) => c,
        Err(e) => {
            output::input_error(input, e);
            return Ok(1);
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    codes.save(&args.output)?;
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

/// Match the codec's channel count: mono codecs get the down-mix (done while loading), stereo
/// codecs get a mono file duplicated; anything else is refused.
fn to_codec_channels(channels: &[Vec<f32>], want: usize) -> tessera_core::Result<Vec<Vec<f32>>> {
    match (channels.len(), want) {
        (have, want) if have == want => Ok(channels.to_vec()),
        (1, want) => Ok(vec![channels[0].clone(); want]),
        (have, want) => Err(Error::invalid(format!(
            "the file has {have} channels and the codec takes {want}; mix it down first"
        ))),
    }
}
