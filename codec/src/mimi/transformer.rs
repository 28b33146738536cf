//! Mimi's encoder and decoder transformers (`MimiTransformerModel`): pre-norm layers of
//! causal self-attention over a sliding window (each frame sees itself and the
//! `sliding_window - 1` frames before it), rotary position embeddings, a GELU MLP, and learned
//! per-channel scales on both residual branches.
//!
//! Frames run in blocks against a cache of the previous window's keys and values, so a whole
//! signal costs memory proportional to its length times the window (never length squared),
//! and a stream continues exactly where the previous chunk stopped.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use tessera_core::nn::PackedLinear;
use tessera_core::nn::exp::gelu_erf_in_place;

use super::attention_cpu::{self, Heads};

/// Queries attended in one block: bounds the score matrix to `BLOCK x (BLOCK + window)`.
const BLOCK: usize = 256;

/// The attention and MLP shapes, as the config gives them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TransformerSpec {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    /// Frames a query sees (itself included); `None`: all previous ones.
    pub window: Option<usize>,
    pub norm_eps: f64,
    pub bias: bool,
    pub activation: Activation,
}

/// The MLP's nonlinearity (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            "silu" | "swish" => Some(Activation::Silu),
            _ => None,
        }
    }

    /// In place on the CPU path's buffer.
    fn apply_in_place(&self, x: &mut Vec<f32>) -> candle_core::Result<()> {
        match self {
            Activation::Gelu => gelu_erf_in_place(x),
            _ => {
                let v = std::mem::take(x);
                let n = v.len();
                let t = Tensor::from_vec(v, n, &Device::Cpu)?;
                *x = self.apply(&t)?.to_vec1::<f32>()?;
            }
        }
        Ok(())
    }

    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            // candle's CPU gelu_erf calls libm's erf element by element: 5% of a Mimi encode.
            Activation::Gelu if x.device().is_cpu() && x.dtype() == DType::F32 => {
                let mut v = x.flatten_all()?.to_vec1::<f32>()?;
                gelu_erf_in_place(&mut v);
                Tensor::from_vec(v, x.shape(), x.device())
            }
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    /// q, k and v projections side by side, `[in, hq + 2 hkv]`: one gemm with three times the
    /// columns instead of three small ones.
    qkv: Linear,
    o: Linear,
}

#[derive(Debug, Clone)]
struct Layer {
    norm1: LayerNorm,
    attn: Attention,
    /// `[D]` scales of the attention branch and of the MLP branch.
    attn_scale: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_scale: Tensor,
    /// The norms' and scales' values for the CPU path (f32 on the CPU only).
    cpu: Option<LayerVectors>,
}

/// A layer's small vectors in plain buffers.
#[derive(Debug, Clone)]
struct LayerVectors {
    norm1: (Vec<f32>, Vec<f32>),
    norm2: (Vec<f32>, Vec<f32>),
    attn_scale: Vec<f32>,
    mlp_scale: Vec<f32>,
}

impl LayerVectors {
    fn new(
        norm1: &LayerNorm,
        norm2: &LayerNorm,
        attn_scale: &Tensor,
        mlp_scale: &Tensor,
    ) -> candle_core::Result<Option<Self>> {
        if !attn_scale.device().is_cpu() || attn_scale.dtype() != DType::F32 {
            return Ok(None);
        }
        let v = |t: &Tensor| t.to_vec1::<f32>();
        let norm = |n: &LayerNorm| -> candle_core::Result<Option<(Vec<f32>, Vec<f32>)>> {
            Ok(match n.bias() {
                Some(b) => Some((v(n.weight())?, v(b)?)),
                None => None,
            })
        };
        let (Some(norm1), Some(norm2)) = (norm(norm1)?, norm(norm2)?) else {
            return Ok(None);
        };
        Ok(Some(LayerVectors {
            norm1,
            norm2,
            attn_scale: v(attn_scale)?,
            mlp_scale: v(mlp_scale)?,
        }))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Transformer {
    layers: Vec<Layer>,
    spec: TransformerSpec,
    /// `1 / theta^(2i / head_dim)` in float32, as transformers computes it.
    inv_freq: Vec<f32>,
}

/// Keys and values of the frames a new one may still attend to, per layer, and the position of
/// the next frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct TransformerState {
    kv: Vec<Option<(Tensor, Tensor)>>,
    position: usize,
}

/// `nn.Linear`: on the CPU in f32, packed for [`PackedLinear`] (bias included); elsewhere with
/// its weight stored transposed and contiguous, `[in, out]`: `x @ W^T` through a transposed
/// view makes the gemm repack the whole weight on every call, which dominates for the few
/// frames of a streaming step (15x slower at 2 rows) and still costs 40% at 256.
#[derive(Debug, Clone)]
enum Linear {
    Packed(PackedLinear),
    Tensor {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
}

impl Module for Linear {
    /// `[B, T, in]` -> `[B, T, out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        match self {
            Linear::Packed(p) => {
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                Tensor::from_vec(p.forward(&xs, b * t), (b, t, p.out_features()), x.device())
            }
            Linear::Tensor { weight_t, bias } => {
                let y = x
                    .reshape((b * t, d))?
                    .matmul(weight_t)?
                    .reshape((b, t, ()))?;
                match bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            }
        }
    }
}

impl Linear {
    /// Layers with the same input side by side (outputs concatenated), from `(weight [out, in],
    /// bias)` pairs.
    fn new(parts: &[(Tensor, Option<Tensor>)]) -> candle_core::Result<Linear> {
        let weights: Vec<&Tensor> = parts.iter().map(|(w, _)| w).collect();
        let weight = Tensor::cat(&weights, 0)?;
        let biases: Option<Vec<&Tensor>> = parts.iter().map(|(_, b)| b.as_ref()).collect();
        let bias = biases.map(|b| Tensor::cat(&b, 0)).transpose()?;
        if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            let (n, k) = weight.dims2()?;
            let w = weight.flatten_all()?.to_vec1::<f32>()?;
            let b = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
            return Ok(Linear::Packed(PackedLinear::new(&w, n, k, b.as_deref())));
        }
        Ok(Linear::Tensor {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn packed(&self) -> Option<&PackedLinear> {
        match self {
            Linear::Packed(p) => Some(p),
            Linear::Tensor { .. } => None,
        }
    }
}

/// `(weight [out, in], bias)` of `{vb}`.
fn linear_parts(
    vb: &VarBuilder,
    d_in: usize,
    d_out: usize,
    bias: bool,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    Ok((
        vb.get((d_out, d_in), "weight")?,
        bias.then(|| vb.get(d_out, "bias")).transpose()?,
    ))
}

impl Transformer {
    /// `{vb}.layers.{i}` as in transformers' state dict.
    pub fn load(vb: VarBuilder, spec: &TransformerSpec) -> candle_core::Result<Self> {
        let d = spec.hidden;
        let (hq, hkv) = (spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim);
        let norm = |vb: VarBuilder| -> candle_core::Result<LayerNorm> {
            Ok(LayerNorm::new(
                vb.get(d, "weight")?,
                vb.get(d, "bias")?,
                spec.norm_eps,
            ))
        };
        let layers = (0..spec.layers)
            .map(|i| {
                let vb = vb.pp("layers").pp(i);
                let a = vb.pp("self_attn");
                let norm1 = norm(vb.pp("input_layernorm"))?;
                let norm2 = norm(vb.pp("post_attention_layernorm"))?;
                let attn_scale = vb.pp("self_attn_layer_scale").get(d, "scale")?;
                let mlp_scale = vb.pp("mlp_layer_scale").get(d, "scale")?;
                let cpu = LayerVectors::new(&norm1, &norm2, &attn_scale, &mlp_scale)?;
                Ok(Layer {
                    norm1,
                    attn: Attention {
                        qkv: Linear::new(&[
                            linear_parts(&a.pp("q_proj"), d, hq, spec.bias)?,
                            linear_parts(&a.pp("k_proj"), d, hkv, spec.bias)?,
                            linear_parts(&a.pp("v_proj"), d, hkv, spec.bias)?,
                        ])?,
                        o: Linear::new(&[linear_parts(&a.pp("o_proj"), hq, d, spec.bias)?])?,
                    },
                    attn_scale,
                    norm2,
                    fc1: Linear::new(&[linear_parts(
                        &vb.pp("mlp").pp("fc1"),
                        d,
                        spec.intermediate,
                        false,
                    )?])?,
                    fc2: Linear::new(&[linear_parts(
                        &vb.pp("mlp").pp("fc2"),
                        spec.intermediate,
                        d,
                        false,
                    )?])?,
                    mlp_scale,
                    cpu,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        // torch: 1.0 / (theta ** (arange(0, dim, 2).float() / dim)), the power rounded to f32.
        let inv_freq = (0..spec.head_dim / 2)
            .map(|i| {
                let e = (2 * i) as f32 / spec.head_dim as f32;
                1.0f32 / spec.rope_theta.powf(e as f64) as f32
            })
            .collect();
        Ok(Transformer {
            layers,
            spec: spec.clone(),
            inv_freq,
        })
    }

    pub fn new_state(&self) -> TransformerState {
        TransformerState {
            kv: vec![None; self.layers.len()],
            position: 0,
        }
    }

    /// Frames `[B, T, D]` continuing the stream in `state` -> `[B, T, D]`.
    pub fn step(&self, x: &Tensor, state: &mut TransformerState) -> candle_core::Result<Tensor> {
        if state.kv.len() != self.layers.len() {
            candle_core::bail!("streaming state made for another model");
        }
        let t = x.dim(1)?;
        let mut outs = Vec::with_capacity(t.div_ceil(BLOCK));
        let mut start = 0;
        while start < t {
            let n = BLOCK.min(t - start);
            outs.push(self.block(&x.narrow(1, start, n)?, state)?);
            start += n;
        }
        if outs.len() == 1 {
            return Ok(outs.pop().expect("one block"));
        }
        Tensor::cat(&outs, 1)
    }

    fn block(&self, x: &Tensor, state: &mut TransformerState) -> candle_core::Result<Tensor> {
        if let Some(y) = self.block_cpu(x, state)? {
            return Ok(y);
        }
        let (_, n, _) = x.dims3()?;
        let p0 = state.position;
        let (cos, sin) = self.rope_tables(p0, n, x.device())?;
        let mut x = x.clone();
        for (layer, kv) in self.layers.iter().zip(state.kv.iter_mut()) {
            let h = layer.norm1.forward(&x)?;
            let a = self.attention(&layer.attn, &h, &cos, &sin, kv, p0)?;
            x = (x + a.broadcast_mul(&layer.attn_scale)?)?;
            let h = layer.norm2.forward(&x)?;
            let h = layer
                .fc2
                .forward(&self.spec.activation.apply(&layer.fc1.forward(&h)?)?)?;
            x = (x + h.broadcast_mul(&layer.mlp_scale)?)?;
        }
        state.position += n;
        Ok(x)
    }

    /// [`Self::block`] in plain buffers on the CPU (f32): packed projections with their biases,
    /// the norms, residual scales and activation in place, no candle op per layer (candle's
    /// element-wise ops run on their own thread pool, whose spinning workers took a core from
    /// rayon's between the gemms). `None` when the layers are not on the CPU in f32.
    fn block_cpu(
        &self,
        x: &Tensor,
        state: &mut TransformerState,
    ) -> candle_core::Result<Option<Tensor>> {
        let parts: Option<Vec<_>> = self
            .layers
            .iter()
            .map(|l| {
                Some((
                    l.cpu.as_ref()?,
                    l.attn.qkv.packed()?,
                    l.attn.o.packed()?,
                    l.fc1.packed()?,
                    l.fc2.packed()?,
                ))
            })
            .collect();
        let Some(parts) = parts else {
            return Ok(None);
        };
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return Ok(None);
        }
        let (b, n, d) = x.dims3()?;
        let rows = b * n;
        let p0 = state.position;
        let (cos, sin) = self.rope_values(p0, n);
        let mut xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut h = vec![0f32; rows * d];
        let eps = self.spec.norm_eps;
        for ((vectors, qkv, o, fc1, fc2), kv) in parts.into_iter().zip(state.kv.iter_mut()) {
            layer_norm_rows(&xs, &mut h, &vectors.norm1, eps);
            let qkv = qkv.forward(&h, rows);
            let attended = self.attention_cpu(&qkv, &cos, &sin, kv, p0, b, n)?;
            add_scaled(&mut xs, &o.forward(&attended, rows), &vectors.attn_scale);
            layer_norm_rows(&xs, &mut h, &vectors.norm2, eps);
            let mut inner = fc1.forward(&h, rows);
            self.spec.activation.apply_in_place(&mut inner)?;
            add_scaled(&mut xs, &fc2.forward(&inner, rows), &vectors.mlp_scale);
        }
        state.position += n;
        Ok(Some(Tensor::from_vec(xs, (b, n, d), x.device())?))
    }

    /// cos and sin of `position * inv_freq` for `n` positions from `p0`, `[n, head_dim / 2]`.
    fn rope_values(&self, p0: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in p0..p0 + n {
            for &f in &self.inv_freq {
                // The angle rounded to f32 as transformers computes it, its cos and sin then
                // correctly rounded.
                let angle = (p as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }

    /// [`Self::rope_values`] as tensors on `dev`.
    fn rope_tables(
        &self,
        p0: usize,
        n: usize,
        dev: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (cos, sin) = self.rope_values(p0, n);
        Ok((
            Tensor::from_vec(cos, (n, half), dev)?,
            Tensor::from_vec(sin, (n, half), dev)?,
        ))
    }

    fn attention(
        &self,
        attn: &Attention,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        kv: &mut Option<(Tensor, Tensor)>,
        p0: usize,
    ) -> candle_core::Result<Tensor> {
        let s = &self.spec;
        let (b, n, _) = h.dims3()?;
        let heads = |x: Tensor, count: usize| -> candle_core::Result<Tensor> {
            x.reshape((b, n, count, s.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (hq, hkv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let qkv = attn.qkv.forward(h)?;
        let q = heads(qkv.narrow(2, 0, hq)?, s.heads)?;
        let k = heads(qkv.narrow(2, hq, hkv)?, s.kv_heads)?;
        let v = heads(qkv.narrow(2, hq + hkv, hkv)?, s.kv_heads)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (k, v) = match kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        let total = k.dim(2)?;
        let first = p0 + n - total; // absolute position of the first cached key
        let keep = self.kept(total);
        if keep > 0 {
            *kv = Some((
                k.narrow(2, total - keep, keep)?,
                v.narrow(2, total - keep, keep)?,
            ));
        }
        let group = s.heads / s.kv_heads;
        let (k, v) = if group > 1 {
            (repeat_kv(&k, group)?, repeat_kv(&v, group)?)
        } else {
            (k, v)
        };
        let scale = 1.0 / (s.head_dim as f64).sqrt();
        let scores = q.matmul(&k.transpose(2, 3)?)?;
        // Off the CPU: the window as an additive -inf mask (the CPU path skips masked keys).
        let mask = self.mask(p0, n, first, total, h.device())?;
        let probs = candle_nn::ops::softmax_last_dim(&(scores * scale)?.broadcast_add(&mask)?)?;
        let out = probs.matmul(&v)?;
        let out = out.transpose(1, 2)?.reshape((b, n, s.heads * s.head_dim))?;
        attn.o.forward(&out)
    }

    /// [`Self::attention`]'s core in plain buffers on the CPU (`attention_cpu`), from the
    /// fused q/k/v projection `[B, n, q | k | v]`, before the output projection: `[B, n, hq]`.
    #[allow(clippy::too_many_arguments)]
    fn attention_cpu(
        &self,
        qkv: &[f32],
        cos: &[f32],
        sin: &[f32],
        kv: &mut Option<(Tensor, Tensor)>,
        p0: usize,
        b: usize,
        n: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let s = &self.spec;
        let shape = Heads {
            batch: b,
            frames: n,
            heads: s.heads,
            kv_heads: s.kv_heads,
            head_dim: s.head_dim,
        };
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let cached = match kv.take() {
            Some((k, v)) => Some((flat(&k)?, flat(&v)?, k.dim(2)?)),
            None => None,
        };
        let kvs = attention_cpu::keys_values(
            qkv,
            cached.as_ref().map(|(k, v, c)| (&k[..], &v[..], *c)),
            cos,
            sin,
            shape,
        );
        let total = kvs.total;
        let first = p0 + n - total; // absolute position of the first cached key
        let scale = (1.0 / (s.head_dim as f64).sqrt()) as f32;
        let visible = |i: usize| self.visible(p0 + i, first, total);
        let out = attention_cpu::attend(qkv, &kvs, cos, sin, scale, shape, &visible);
        let keep = self.kept(total);
        if keep > 0 {
            let dims = (b, s.kv_heads, total, s.head_dim);
            let last = |v: Vec<f32>| -> candle_core::Result<Tensor> {
                Tensor::from_vec(v, dims, &Device::Cpu)?
                    .narrow(2, total - keep, keep)?
                    .contiguous()
            };
            *kv = Some((last(kvs.keys)?, last(kvs.values)?));
        }
        Ok(out)
    }

    /// How many of the last `total` keys and values to cache: those the next frame may still
    /// see (positions after its own minus the window).
    fn kept(&self, total: usize) -> usize {
        match self.spec.window {
            Some(w) => total.min(w - 1),
            None => total,
        }
    }

    /// Keys `lo..hi` (indices into the cached keys from `first`) that query `q` sees.
    fn visible(&self, q: usize, first: usize, total: usize) -> (usize, usize) {
        let lo = match self.spec.window {
            Some(w) => (q + 1).saturating_sub(w).max(first),
            None => first,
        };
        let hi = (q + 1).min(first + total);
        (lo.min(hi) - first, hi - first)
    }

    /// `[n, total]`: 0 where query `p0 + i` may see key `first + j`, -inf elsewhere.
    fn mask(
        &self,
        p0: usize,
        n: usize,
        first: usize,
        total: usize,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let window = self.spec.window;
        let mut m = Vec::with_capacity(n * total);
        for i in 0..n {
            let q = p0 + i;
            for j in 0..total {
                let k = first + j;
                let visible = k <= q && window.is_none_or(|w| k + w > q);
                m.push(if visible { 0f32 } else { f32::NEG_INFINITY });
            }
        }
        Tensor::from_vec(m, (n, total), dev)
    }
}

fn repeat_kv(x: &Tensor, group: usize) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, h, group, t, d))?
        .reshape((b, h * group, t, d))
}

/// `out = LayerNorm(x)` row by row (rows of `weight.len()`), mean and variance accumulated in f64.
fn layer_norm_rows(x: &[f32], out: &mut [f32], (weight, bias): &(Vec<f32>, Vec<f32>), eps: f64) {
    let d = weight.len();
    for (row, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = lane_sum(row, |v| v) / d as f64;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        let (mean, inv) = (mean as f32, inv as f32);
        for (((o, &v), &w), &b) in dst.iter_mut().zip(row).zip(weight).zip(bias) {
            *o = (v - mean) * inv * w + b;
        }
    }
}

/// `sum f(x)` in f64 over eight interleaved lanes: eight independent chains of additions that
/// the compiler vectorises, where one sequential sum waits on each addition's latency (the
/// layer norms took 2.6 ms of a 71 ms Mimi transformer pass, now 1.2).
#[inline]
fn lane_sum(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(f64::from(v));
        }
    }
    let tail: f64 = rest.iter().map(|&v| f(f64::from(v))).sum();
    acc.iter().sum::<f64>() + tail
}

/// `x += scale * branch`, `scale` per channel (rows of `scale.len()`), as the reference's
/// `residual + layer_scale(branch)`.
fn add_scaled(x: &mut [f32], branch: &[f32], scale: &[f32]) {
    let d = scale.len();
    for (row, br) in x.chunks_exact_mut(d).zip(branch.chunks_exact(d)) {
        for ((v, &b), &s) in row.iter_mut().zip(br).zip(scale) {
            *v += s * b;
        }
    }
}
