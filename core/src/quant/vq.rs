//! Vector quantizer: the nearest entry of a learned codebook, optionally in a projected space
//! (factorised codes: project in to the codebook's dimension, look up, project back out).

use super::distance::NearestSearch;
use super::{Distance, Projection, Quantizer, projection, rows, validate};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// A codebook `[K, codebook_dim]` searched by [`Distance`], with optional projections from the
/// latent dimension to the codebook's and back.
#[derive(Clone, Debug)]
pub struct VectorQuantizer {
    /// Entries as stored, `[K, codebook_dim]`; decoding returns these, never the normalised ones.
    codebook: Tensor,
    search: NearestSearch,
    projections: Option<(Projection, Projection)>,
    straight_through: bool,
}

/// Where a vector quantizer's tensors sit under its checkpoint prefix, and how the reference
/// implementation that wrote them computes.
#[derive(Clone, Copy, Debug)]
pub struct VqLayout<'a> {
    pub codebook: CodebookKey<'a>,
    /// Input projection prefix: `{in_proj}.weight` and optional `{in_proj}.bias`, used when present.
    pub in_proj: &'a str,
    /// Output projection prefix, present exactly when the input projection is.
    pub out_proj: &'a str,
    pub distance: Distance,
    /// See [`VectorQuantizer::with_straight_through`].
    pub straight_through: bool,
}

/// How a checkpoint stores a codebook.
#[derive(Clone, Copy, Debug)]
pub enum CodebookKey<'a> {
    /// One tensor `[K, codebook_dim]`.
    Plain(&'a str),
    /// Exponential-moving-average statistics, as Moshi and Mimi keep them: the codebook is
    /// `sum / max(usage, epsilon)` (see [`codebook_from_ema`]).
    Ema {
        sum: &'a str,
        usage: &'a str,
        epsilon: f64,
    },
}

impl VqLayout<'static> {
    /// The `encodec` package (`quantizer.vq.layers.{i}`): Euclidean codebook `_codebook.embed`.
    pub const ENCODEC: Self = Self {
        codebook: CodebookKey::Plain("_codebook.embed"),
        in_proj: "project_in",
        out_proj: "project_out",
        distance: Distance::Euclidean,
        straight_through: false,
    };

    /// transformers' `EncodecModel` (`quantizer.layers.{i}`): `codebook.embed`.
    pub const ENCODEC_TRANSFORMERS: Self = Self {
        codebook: CodebookKey::Plain("codebook.embed"),
        ..Self::ENCODEC
    };

    /// DAC and SNAC (`quantizer.quantizers.{i}`), in their own packages and in transformers:
    /// `codebook.weight` with `in_proj`/`out_proj` kernel-1 convolutions (weight norm folded),
    /// cosine lookup, and stage outputs computed through the straight-through expression.
    pub const DAC: Self = Self {
        codebook: CodebookKey::Plain("codebook.weight"),
        in_proj: "in_proj",
        out_proj: "out_proj",
        distance: Distance::Cosine,
        straight_through: true,
    };

    /// The `moshi` package (Mimi, `...vq.layers.{i}`): EMA codebook in `_codebook`, `cdist` search.
    pub const MOSHI: Self = Self {
        codebook: CodebookKey::Ema {
            sum: "_codebook.embedding_sum",
            usage: "_codebook.cluster_usage",
            epsilon: 1e-5,
        },
        in_proj: "project_in",
        out_proj: "project_out",
        distance: Distance::Cdist,
        straight_through: false,
    };

    /// transformers' `MimiModel` (`...layers.{i}`): EMA codebook in `codebook`, `cdist` search.
    pub const MIMI_TRANSFORMERS: Self = Self {
        codebook: CodebookKey::Ema {
            sum: "codebook.embed_sum",
            usage: "codebook.cluster_usage",
            epsilon: 1e-5,
        },
        ..Self::MOSHI
    };
}

/// The codebook that EMA statistics stand for: `sum [K, D] / max(usage [K], epsilon)`, row by row.
pub fn codebook_from_ema(sum: &Tensor, usage: &Tensor, epsilon: f64) -> Result<Tensor> {
    let (size, _) = sum.dims2().map_err(|_| {
        Error::invalid(format!(
            "EMA codebook sum must be [K, dim], got {:?}",
            sum.dims()
        ))
    })?;
    if usage.dims() != [size] {
        return Err(Error::invalid(format!(
            "EMA cluster usage must be [{size}] to match a sum of {:?}, got {:?}",
            sum.dims(),
            usage.dims()
        )));
    }
    let usage = usage
        .to_dtype(sum.dtype())?
        .maximum(epsilon)?
        .unsqueeze(1)?;
    Ok(sum.broadcast_div(&usage)?)
}

impl VectorQuantizer {
    /// A quantizer over `codebook` (`[K, dim]`, K >= 1), without projections.
    pub fn new(codebook: Tensor, distance: Distance) -> Result<Self> {
        let &[size, dim] = codebook.dims() else {
            return Err(Error::invalid(format!(
                "codebook must be [entries, dim], got {:?}",
                codebook.dims()
            )));
        };
        if size == 0 || dim == 0 {
            return Err(Error::invalid(format!(
                "codebook has an empty dimension: {:?}",
                codebook.dims()
            )));
        }
        if !codebook.dtype().is_float() {
            return Err(Error::invalid(format!(
                "codebook must be floating point, got {:?}",
                codebook.dtype()
            )));
        }
        let search = NearestSearch::new(&codebook, distance)?;
        Ok(Self {
            codebook,
            search,
            projections: None,
            straight_through: false,
        })
    }

    /// Adds factorised codes: `in_proj` maps latents to the codebook's dimension before the
    /// search, `out_proj` maps entries back after it.
    pub fn with_projections(mut self, in_proj: Projection, out_proj: Projection) -> Result<Self> {
        let who = "vector quantizer";
        projection::check_pair(&in_proj, &out_proj, self.codebook_dim(), self.device(), who)?;
        self.projections = Some((in_proj, out_proj));
        Ok(self)
    }

    /// DAC and SNAC compute each stage's output in their forward pass as
    /// `out_proj(z_e + (z_q - z_e))` (the straight-through estimator): the identity in exact
    /// arithmetic, not always in f32. With this on, [`quantize`](Self::quantize) and residual
    /// encoding do the same, so the residual that later stages see carries the same rounding
    /// as theirs (near-ties are decided by such last bits). Decoding from codes is unaffected.
    pub fn with_straight_through(mut self, on: bool) -> Self {
        self.straight_through = on;
        self
    }

    /// Loads from a checkpoint prefix, e.g. `vb.pp("quantizer.quantizers.0")` with
    /// [`VqLayout::DAC`].
    pub fn load(vb: &VarBuilder, layout: &VqLayout) -> Result<Self> {
        let codebook = match layout.codebook {
            CodebookKey::Plain(name) => vb.get_unchecked(name)?,
            CodebookKey::Ema {
                sum,
                usage,
                epsilon,
            } => codebook_from_ema(&vb.get_unchecked(sum)?, &vb.get_unchecked(usage)?, epsilon)?,
        };
        let prefix = vb.prefix();
        let vq = Self::new(codebook, layout.distance)
            .map_err(|e| Error::invalid(format!("{prefix}: {e}")))?;
        let vq = match Projection::load_pair(vb, layout.in_proj, layout.out_proj)? {
            Some((in_proj, out_proj)) => vq
                .with_projections(in_proj, out_proj)
                .map_err(|e| Error::invalid(format!("{prefix}: {e}")))?,
            None => vq,
        };
        Ok(vq.with_straight_through(layout.straight_through))
    }

    /// The entries as given, `[K, codebook_dim]`.
    pub fn codebook(&self) -> &Tensor {
        &self.codebook
    }

    pub fn codebook_dim(&self) -> usize {
        self.codebook.dims()[1]
    }

    pub fn distance(&self) -> Distance {
        self.search.distance()
    }

    pub fn projections(&self) -> Option<(&Projection, &Projection)> {
        self.projections.as_ref().map(|(i, o)| (i, o))
    }

    pub(crate) fn device(&self) -> &Device {
        self.codebook.device()
    }

    pub(crate) fn dtype(&self) -> DType {
        self.codebook.dtype()
    }

    /// The dtype of decoded latents.
    pub(crate) fn out_dtype(&self) -> DType {
        match &self.projections {
            Some((_, out_proj)) => out_proj.dtype(),
            None => self.dtype(),
        }
    }

    /// Codes `[batch, frames]` and the quantized latents `[batch, dim, frames]` in one pass (what
    /// a codec's forward pass produces; equal to `decode(codes)` unless straight-through is on).
    pub fn quantize(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (batch, frames) = validate::latents(x, self.dim(), self.device(), "vector quantizer")?;
        if batch * frames == 0 {
            return Ok((
                Tensor::zeros((batch, frames), DType::U32, self.device())?,
                Tensor::zeros((batch, self.dim(), frames), self.out_dtype(), self.device())?,
            ));
        }
        let (codes, quantized) = self.quantize_rows(&rows::to_rows(x)?)?;
        Ok((
            codes.reshape((batch, frames))?,
            rows::from_rows(&quantized, batch, frames)?,
        ))
    }

    /// Nearest codes of latent rows `[n, dim]` (n >= 1): `[n]`.
    pub(crate) fn encode_rows(&self, x: &Tensor) -> Result<Tensor> {
        self.search.nearest(&self.project_in(x)?)
    }

    /// The stage's search when it can run on plain CPU buffers: no projections, a Euclidean
    /// codebook of f32 on the CPU.
    pub(crate) fn cpu_search(&self) -> Option<&NearestSearch> {
        (self.projections.is_none() && self.search.has_cpu()).then_some(&self.search)
    }

    /// Codes `[n]` and quantized rows `[n, dim]` of latent rows `[n, dim]` (n >= 1).
    pub(crate) fn quantize_rows(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let latent = self.project_in(x)?;
        let codes = self.search.nearest(&latent)?;
        let entries = self.codebook.index_select(&codes, 0)?;
        let quantized = match &self.projections {
            Some((_, out_proj)) => {
                let entries = if self.straight_through {
                    let latent = latent.to_dtype(entries.dtype())?;
                    (&latent + (&entries - &latent)?)?
                } else {
                    entries
                };
                out_proj.forward_rows(&entries)?
            }
            None => entries,
        };
        Ok((codes, quantized))
    }

    /// Latent rows `[n, dim]` of in-range codes `[n]`.
    pub(crate) fn decode_rows(&self, codes: &Tensor) -> Result<Tensor> {
        let entries = self.codebook.index_select(codes, 0)?;
        match &self.projections {
            Some((_, out_proj)) => out_proj.forward_rows(&entries),
            None => Ok(entries),
        }
    }

    fn project_in(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.dtype())?;
        match &self.projections {
            Some((in_proj, _)) => in_proj.forward_rows(&x),
            None => Ok(x),
        }
    }
}

impl Quantizer for VectorQuantizer {
    /// `[batch, dim, frames]` to codes `[batch, frames]`.
    fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, frames) = validate::latents(x, self.dim(), self.device(), "vector quantizer")?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros((batch, frames), DType::U32, self.device())?);
        }
        let codes = self.encode_rows(&rows::to_rows(x)?)?;
        Ok(codes.reshape((batch, frames))?)
    }

    /// Codes `[batch, frames]` to latents `[batch, dim, frames]`.
    fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let who = "vector quantizer";
        validate::codes(codes, "[batch, frames]", 2, self.device(), who)?;
        let (batch, frames) = codes.dims2()?;
        validate::code_range(codes, self.codebook_size(), who)?;
        if batch * frames == 0 {
            return Ok(Tensor::zeros(
                (batch, self.dim(), frames),
                self.out_dtype(),
                self.device(),
            )?);
        }
        let latents = self.decode_rows(&codes.flatten_all()?)?;
        rows::from_rows(&latents, batch, frames)
    }

    fn codebook_size(&self) -> usize {
        self.codebook.dims()[0]
    }

    fn dim(&self) -> usize {
        match &self.projections {
            Some((in_proj, _)) => in_proj.in_dim(),
            None => self.codebook_dim(),
        }
    }
}
