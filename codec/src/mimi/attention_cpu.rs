//! The attention core of Mimi's transformers on the CPU (f32): rotary embeddings, scores,
//! the windowed softmax and the weighted values, one head per job, in plain buffers.
//!
//! Through candle ops the core made a contiguous copy of q, k and v per head layout, a rotated
//! copy of q and k, a batched matmul for the scores, a copy for the softmax, another batched
//! matmul and a transposed copy of the result: about 3 ms per layer for 250 frames, against
//! 0.5 ms of arithmetic. Here each head reads its columns of the fused q/k/v projection in place,
//! rotates its queries into a small buffer, and runs two gemms on strided views.

use rayon::prelude::*;
use tessera_core::nn::exp;
use tessera_core::nn::{MatRef, matmul_into};

/// Queries per block of a head's products.
const QUERY_BLOCK: usize = 64;

/// The shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub batch: usize,
    /// New frames.
    pub frames: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Keys (rotated) and values of every frame a new one may attend to: `[batch, kv_heads, total,
/// head_dim]` each.
pub(crate) struct KeysValues {
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
    pub total: usize,
}

/// `x` rotated by the angles of frame `t` in the rotate-half form, as candle's `rope` computes
/// it (same products, same order): `[x1 cos - x2 sin, x1 sin + x2 cos]`.
fn rotate(dst: &mut [f32], src: &[f32], cos: &[f32], sin: &[f32]) {
    let half = src.len() / 2;
    for i in 0..half {
        let (x1, x2) = (src[i], src[i + half]);
        dst[i] = x1 * cos[i] - x2 * sin[i];
        dst[i + half] = x1 * sin[i] + x2 * cos[i];
    }
}

/// The cached keys and values (`[batch, kv_heads, cached, head_dim]`, keys already rotated)
/// followed by the new frames' keys (rotated) and values from `qkv` (`[batch, frames, q | k |
/// v]`); `cos` and `sin` are `[frames, head_dim / 2]`.
pub(crate) fn keys_values(
    qkv: &[f32],
    cached: Option<(&[f32], &[f32], usize)>,
    cos: &[f32],
    sin: &[f32],
    s: Heads,
) -> KeysValues {
    let (hd, n) = (s.head_dim, s.frames);
    let (hq, hkv) = (s.heads * hd, s.kv_heads * hd);
    let width = hq + 2 * hkv;
    let c = cached.map_or(0, |(_, _, c)| c);
    let total = c + n;
    let mut keys = vec![0f32; s.batch * s.kv_heads * total * hd];
    let mut values = vec![0f32; keys.len()];
    for b in 0..s.batch {
        for g in 0..s.kv_heads {
            let at = (b * s.kv_heads + g) * total * hd;
            let (kd, vd) = (
                &mut keys[at..][..total * hd],
                &mut values[at..][..total * hd],
            );
            if let Some((ck, cv, _)) = cached {
                let from = (b * s.kv_heads + g) * c * hd;
                kd[..c * hd].copy_from_slice(&ck[from..][..c * hd]);
                vd[..c * hd].copy_from_slice(&cv[from..][..c * hd]);
            }
            for t in 0..n {
                let row = &qkv[(b * n + t) * width..][..width];
                let half = hd / 2;
                let (cs, sn) = (&cos[t * half..][..half], &sin[t * half..][..half]);
                rotate(
                    &mut kd[(c + t) * hd..][..hd],
                    &row[hq + g * hd..][..hd],
                    cs,
                    sn,
                );
                vd[(c + t) * hd..][..hd].copy_from_slice(&row[hq + hkv + g * hd..][..hd]);
            }
        }
    }
    KeysValues {
        keys,
        values,
        total,
    }
}

/// `softmax(q k^T * scale + mask) v` for every head, `[batch, frames, heads * head_dim]`.
/// `visible(i)` gives the keys (indices into the `total` of `kv`) that new frame `i` sees; the
/// others get weight 0.
pub(crate) fn attend(
    qkv: &[f32],
    kv: &KeysValues,
    cos: &[f32],
    sin: &[f32],
    scale: f32,
    s: Heads,
    visible: &(dyn Fn(usize) -> (usize, usize) + Sync),
) -> Vec<f32> {
    let (hd, n, total) = (s.head_dim, s.frames, kv.total);
    let (hq, hkv) = (s.heads * hd, s.kv_heads * hd);
    let width = hq + 2 * hkv;
    let group = s.heads / s.kv_heads;
    let per_head: Vec<Vec<f32>> = (0..s.batch * s.heads)
        .into_par_iter()
        .map(|job| {
            let (b, h) = (job / s.heads, job % s.heads);
            let g = h / group;
            let half = hd / 2;
            let mut q = vec![0f32; n * hd];
            for t in 0..n {
                rotate(
                    &mut q[t * hd..][..hd],
                    &qkv[(b * n + t) * width + h * hd..][..hd],
                    &cos[t * half..][..half],
                    &sin[t * half..][..half],
                );
            }
            let at = (b * s.kv_heads + g) * total * hd;
            let (keys, values) = (&kv.keys[at..][..total * hd], &kv.values[at..][..total * hd]);
            let mut out = vec![0f32; n * hd];
            let mut scores = Vec::new();
            // Queries in blocks, each against the keys some of its queries see: a causal
            // window leaves the keys after a block's last query out of its products (a whole
            // 250-frame window: 3/8 of them with blocks of 64).
            for r0 in (0..n).step_by(QUERY_BLOCK) {
                let rows = QUERY_BLOCK.min(n - r0);
                let spans: Vec<(usize, usize)> = (r0..r0 + rows).map(visible).collect();
                let k0 = spans.iter().map(|v| v.0).min().unwrap_or(0);
                let k1 = spans.iter().map(|v| v.1).max().unwrap_or(0).max(k0);
                let keys_seen = k1 - k0;
                if keys_seen == 0 {
                    continue;
                }
                scores.clear();
                scores.resize(rows * keys_seen, 0f32);
                matmul_into(
                    &mut scores,
                    keys_seen,
                    rows,
                    keys_seen,
                    hd,
                    MatRef::new(&q[r0 * hd..], hd, 1),
                    MatRef::new(&keys[k0 * hd..], 1, hd),
                    false,
                    1,
                );
                for (row, &(lo, hi)) in scores.chunks_exact_mut(keys_seen).zip(&spans) {
                    let (lo, hi) = (lo.clamp(k0, k1) - k0, hi.clamp(k0, k1) - k0);
                    row[..lo].fill(0.0);
                    row[hi.max(lo)..].fill(0.0);
                    if hi > lo {
                        exp::softmax_in_place(&mut row[lo..hi], scale);
                    }
                }
                matmul_into(
                    &mut out[r0 * hd..],
                    hd,
                    rows,
                    hd,
                    keys_seen,
                    MatRef::new(&scores, keys_seen, 1),
                    MatRef::new(&values[k0 * hd..], hd, 1),
                    false,
                    1,
                );
            }
            out
        })
        .collect();
    let mut out = vec![0f32; s.batch * n * hq];
    for (job, head) in per_head.iter().enumerate() {
        let (b, h) = (job / s.heads, job % s.heads);
        for t in 0..n {
            out[(b * n + t) * hq + h * hd..][..hd].copy_from_slice(&head[t * hd..][..hd]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_candles_rope() {
        use candle_core::{Device, Tensor};
        let (n, hd) = (3, 8);
        let x: Vec<f32> = (0..n * hd).map(|i| (i as f32 * 0.37).sin()).collect();
        let cos: Vec<f32> = (0..n * hd / 2).map(|i| (i as f32 * 0.11).cos()).collect();
        let sin: Vec<f32> = (0..n * hd / 2).map(|i| (i as f32 * 0.11).sin()).collect();
        let dev = Device::Cpu;
        let want = candle_nn::rotary_emb::rope(
            &Tensor::from_vec(x.clone(), (1, 1, n, hd), &dev).unwrap(),
            &Tensor::from_vec(cos.clone(), (n, hd / 2), &dev).unwrap(),
            &Tensor::from_vec(sin.clone(), (n, hd / 2), &dev).unwrap(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        let mut got = vec![0f32; n * hd];
        for t in 0..n {
            rotate(
                &mut got[t * hd..][..hd],
                &x[t * hd..][..hd],
                &cos[t * hd / 2..][..hd / 2],
                &sin[t * hd / 2..][..hd / 2],
            );
        }
        assert_eq!(got, want);
    }
}
