//! Edge padding of a signal, as `torch.nn.functional.pad` does for 1-D signals.

use tessera_core::{Error, Result};

/// How samples before the start and after the end of a signal are made up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PadMode {
    /// Mirror without repeating the edge sample: `[c b | a b c d | c b]` (torch `reflect`,
    /// numpy/librosa `reflect`). Needs the padding to be shorter than the signal.
    #[default]
    Reflect,
    /// Zeros (torch `constant` with value 0, librosa's default since 0.10).
    Constant,
    /// Repeat the edge sample: `[a a | a b c d | d d]` (torch `replicate`, numpy `edge`).
    Replicate,
}

impl PadMode {
    /// Parses torch's and numpy's names (`reflect`, `constant`, `zeros`, `replicate`, `edge`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "reflect" => Some(PadMode::Reflect),
            "constant" | "zeros" | "zero" => Some(PadMode::Constant),
            "replicate" | "edge" => Some(PadMode::Replicate),
            _ => None,
        }
    }

    /// Checks that a signal of `len` samples can be padded by `pad` on each side.
    pub(crate) fn check(self, len: usize, pad: usize) -> Result<()> {
        match self {
            PadMode::Reflect if pad >= len => Err(Error::invalid(format!(
                "signal of {len} samples is too short for reflect padding of {pad} \
                 (needs more than {pad} samples)"
            ))),
            PadMode::Replicate if len == 0 && pad > 0 => Err(Error::invalid(
                "cannot replicate-pad an empty signal".to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// The sample at `index` of the infinitely padded signal (`index` may be negative or past
    /// the end). Only valid for paddings that passed [`PadMode::check`].
    #[inline]
    pub(crate) fn sample(self, signal: &[f32], index: isize) -> f32 {
        let len = signal.len() as isize;
        if (0..len).contains(&index) {
            return signal[index as usize];
        }
        match self {
            PadMode::Constant => 0.0,
            PadMode::Replicate => signal[index.clamp(0, len - 1) as usize],
            PadMode::Reflect => {
                let mirrored = if index < 0 {
                    -index
                } else {
                    2 * (len - 1) - index
                };
                signal[mirrored as usize]
            }
        }
    }
}

/// `signal` with `left` and `right` samples added by `mode`.
pub fn pad(signal: &[f32], left: usize, right: usize, mode: PadMode) -> Result<Vec<f32>> {
    mode.check(signal.len(), left.max(right))?;
    signal
        .len()
        .checked_add(left)
        .and_then(|n| n.checked_add(right))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| Error::invalid(format!("padding {left} + {right} is too large")))?;
    let start = -(left as isize);
    let end = (signal.len() + right) as isize;
    Ok((start..end).map(|i| mode.sample(signal, i)).collect())
}
