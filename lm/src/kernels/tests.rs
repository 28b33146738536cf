//! The kernels against plain f64 loops over the same inputs.

use candle_core::{Device, Tensor};

use super::attention::FusedAttention;
use super::glu::{Gate, GatedUnit};
use super::rope::RopeHeads;
use crate::kv_cache::KeyMask;

/// Deterministic values in about [-2, 2].
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

struct Case {
    len: usize,
    keys: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    v_dim: usize,
    mask: KeyMask,
    softcap: Option<f32>,
    sinks: bool,
}

/// Attention by the definition, in f64: `[len, heads * v_dim]`.
fn reference(c: &Case, q: &[f32], k: &[f32], v: &[f32], sinks: &[f32], scale: f32) -> Vec<f64> {
    let group = c.heads / c.kv_heads;
    let mut out = vec![0f64; c.len * c.heads * c.v_dim];
    for i in 0..c.len {
        for h in 0..c.heads {
            let g = h / group;
            let visible = |j: usize| match c.mask {
                KeyMask::All => true,
                KeyMask::Causal {
                    first_key,
                    first_query,
                    window,
                } => {
                    let (qp, kp) = (first_query + i, first_key + j);
                    kp <= qp && window.is_none_or(|w| qp - kp < w)
                }
            };
            let mut scores: Vec<Option<f64>> = (0..c.keys)
                .map(|j| {
                    visible(j).then(|| {
                        let mut s = 0f64;
                        for e in 0..c.dim {
                            s += q[(i * c.heads + h) * c.dim + e] as f64
                                * k[(g * c.keys + j) * c.dim + e] as f64;
                        }
                        let s = s * scale as f64;
                        match c.softcap {
                            Some(cap) => (s / cap as f64).tanh() * cap as f64,
                            None => s,
                        }
                    })
                })
                .collect();
            let sink = c.sinks.then(|| sinks[h] as f64);
            let m = scores
                .iter()
                .flatten()
                .chain(sink.iter())
                .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let mut denom = sink.map_or(0.0, |s| (s - m).exp());
            for s in scores.iter_mut().flatten() {
                *s = (*s - m).exp();
                denom += *s;
            }
            for (j, s) in scores.iter().enumerate() {
                if let Some(p) = s {
                    for e in 0..c.v_dim {
                        out[(i * c.heads + h) * c.v_dim + e] +=
                            p / denom * v[(g * c.keys + j) * c.v_dim + e] as f64;
                    }
                }
            }
        }
    }
    out
}

fn check(c: &Case) {
    let dev = Device::Cpu;
    let q = values(c.len * c.heads * c.dim, 1);
    let k = values(c.kv_heads * c.keys * c.dim, 2);
    let v = values(c.kv_heads * c.keys * c.v_dim, 3);
    let sinks = values(c.heads, 4);
    let scale = 1.0 / (c.dim as f32).sqrt();
    let want = reference(c, &q, &k, &v, &sinks, scale);
    let qt = Tensor::from_slice(&q, (c.len, c.heads, c.dim), &dev).unwrap();
    // Keys and values as the caches hand them out: narrowed views of longer buffers.
    let pad = 5;
    let widen = |x: &[f32], d: usize| {
        let t = Tensor::from_slice(x, (1, c.kv_heads, c.keys, d), &dev).unwrap();
        let z = Tensor::zeros((1, c.kv_heads, pad, d), candle_core::DType::F32, &dev).unwrap();
        Tensor::cat(&[&t, &z], 2)
            .unwrap()
            .narrow(2, 0, c.keys)
            .unwrap()
    };
    let (kt, vt) = (widen(&k, c.dim), widen(&v, c.v_dim));
    let op = FusedAttention {
        num_heads: c.heads,
        num_kv_heads: c.kv_heads,
        head_dim: c.dim,
        v_head_dim: c.v_dim,
        scale,
        softcap: c.softcap,
        mask: c.mask,
        sinks: c.sinks.then_some(&sinks[..]),
    };
    let got = qt.apply_op3_no_bwd(&kt, &vt, &op).unwrap();
    assert_eq!(got.dims(), &[c.len, c.heads * c.v_dim]);
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let err = got
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        err < 2e-6,
        "max error {err:e} ({} queries, {} keys)",
        c.len,
        c.keys
    );
}

#[test]
fn attention_matches_the_definition() {
    let causal = |first_key, first_query, window| KeyMask::Causal {
        first_key,
        first_query,
        window,
    };
    let cases = [
        // Prefill across several query blocks, GQA 3:1.
        (150, 150, 6, 2, 16, 16, causal(0, 0, None), None, false),
        // Decode step: one query over everything.
        (1, 77, 4, 4, 8, 8, KeyMask::All, None, false),
        // A chunk after cached positions, window shorter than the chunk, sinks, v dim != k dim.
        (
            70,
            70 + 12,
            4,
            2,
            24,
            16,
            causal(30, 42, Some(13)),
            None,
            true,
        ),
        // Windowed prefill from position 0, soft-capping, MQA.
        (
            130,
            130,
            8,
            1,
            16,
            16,
            causal(0, 0, Some(40)),
            Some(5.0),
            false,
        ),
        // Chunked prefill after a long cache.
        (9, 300, 2, 1, 8, 12, causal(0, 291, None), None, true),
    ];
    for (len, keys, heads, kv_heads, dim, v_dim, mask, softcap, sinks) in cases {
        check(&Case {
            len,
            keys,
            heads,
            kv_heads,
            dim,
            v_dim,
            mask,
            softcap,
            sinks,
        });
    }
}

#[test]
fn rope_heads_rotate_and_lay_out() {
    let dev = Device::Cpu;
    let (len, cols, heads, dim, rot) = (37, 100, 3, 10, 6);
    let col = 40;
    let x = values(len * cols, 9);
    let half = rot / 2;
    let angles: Vec<f32> = (0..len * half).map(|i| i as f32 * 0.37).collect();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let xt = Tensor::from_slice(&x, (len, cols), &dev).unwrap();
    for heads_first in [false, true] {
        let op = RopeHeads {
            col,
            heads,
            head_dim: dim,
            rotary_dim: rot,
            cos: &cos,
            sin: &sin,
            heads_first,
            scale: Some(0.5),
        };
        let y = xt.apply_op1_no_bwd(&op).unwrap();
        let y = if heads_first {
            y.transpose(0, 1).unwrap()
        } else {
            y
        };
        let y: Vec<Vec<Vec<f32>>> = y.to_vec3().unwrap();
        for t in 0..len {
            for h in 0..heads {
                let s = &x[t * cols + col + h * dim..][..dim];
                for i in 0..dim {
                    let want = if i < half {
                        let (c, n) = (cos[t * half + i], sin[t * half + i]);
                        s[i] * c - s[i + half] * n
                    } else if i < rot {
                        let (c, n) = (cos[t * half + i - half], sin[t * half + i - half]);
                        s[i - half] * n + s[i] * c
                    } else {
                        s[i]
                    };
                    assert_eq!(y[t][h][i], want * 0.5, "t {t} h {h} i {i}");
                }
            }
        }
    }
}

/// SwiGLU and GeGLU (tanh) against their f64 definitions, act(gate) * up.
#[test]
fn gated_units_are_activated_gate_times_up() {
    let dev = Device::Cpu;
    let silu = |g: f64| g / (1.0 + (-g).exp());
    let gelu_tanh = |g: f64| {
        let inner = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
        0.5 * g * (1.0 + inner.tanh())
    };
    let cases: [(Gate, &dyn Fn(f64) -> f64); 2] =
        [(Gate::Silu, &silu), (Gate::GeluTanh, &gelu_tanh)];
    for (gate, act) in cases {
        for len in [1, 3, 50] {
            let inter = 24;
            let x = values(len * 2 * inter, 11);
            let y = Tensor::from_slice(&x, (len, 2 * inter), &dev)
                .unwrap()
                .apply_op1_no_bwd(&GatedUnit(gate))
                .unwrap();
            let y: Vec<Vec<f32>> = y.to_vec2().unwrap();
            for t in 0..len {
                for i in 0..inter {
                    let (g, u) = (
                        x[t * 2 * inter + i] as f64,
                        x[t * 2 * inter + inter + i] as f64,
                    );
                    let want = act(g) * u;
                    assert!((y[t][i] as f64 - want).abs() < 1e-6, "{gate:?} {t} {i}");
                }
            }
        }
    }
}

/// The column-parallel linear layer equals candle's matmul, with and without bias, for row
/// counts and widths that leave partial column slabs.
#[test]
fn parallel_linear_equals_matmul() {
    use super::linear::{ParallelLinear, ParallelLinearBias};
    let dev = Device::Cpu;
    for (m, k, n) in [(8, 5, 3), (17, 64, 200), (40, 33, 385)] {
        let x = Tensor::from_slice(&values(m * k, 1), (m, k), &dev).unwrap();
        let w = Tensor::from_slice(&values(n * k, 2), (n, k), &dev).unwrap();
        let b = Tensor::from_slice(&values(n, 3), n, &dev).unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        let got = x.apply_op2_no_bwd(&w, &ParallelLinear).unwrap();
        let want_b = want.broadcast_add(&b).unwrap();
        let got_b = x.apply_op3_no_bwd(&w, &b, &ParallelLinearBias).unwrap();
        for (got, want) in [(got, want), (got_b, want_b)] {
            let err = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(err < 1e-4, "{m}x{k}x{n}: {err}");
        }
    }
}
