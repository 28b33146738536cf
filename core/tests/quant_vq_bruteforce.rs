//! Vector and residual quantizers against an explicit nearest-entry search in f64, plus ties,
//! round trips and the structure of residual codes.

mod quant_common;

use candle_core::{DType, Device, IndexOp, Tensor};
use quant_common::*;
use tessera_core::quant::{
    Distance, Projection, Quantizer, ResidualVectorQuantizer, VectorQuantizer,
};

const DISTANCES: [Distance; 3] = [Distance::Euclidean, Distance::Cdist, Distance::Cosine];

/// Parameters in f64 alongside the quantizer built from their f32 values.
struct Stage {
    vq: VectorQuantizer,
    codebook: Vec<f64>,
    codebook_dim: usize,
    projections: Option<Affines>,
}

/// `(in_w [cd, dim], in_b, out_w [dim, cd], out_b)` in f64.
type Affines = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

fn stage(
    rng: &mut rand::rngs::StdRng,
    dim: usize,
    size: usize,
    cd: Option<usize>,
    distance: Distance,
) -> Stage {
    let codebook_dim = cd.unwrap_or(dim);
    let (book, codebook) = random(rng, &[size, codebook_dim], 1.0);
    let vq = VectorQuantizer::new(book, distance).unwrap();
    match cd {
        None => Stage {
            vq,
            codebook,
            codebook_dim,
            projections: None,
        },
        Some(cd) => {
            let (w_in, in_w) = random(rng, &[cd, dim, 1], 0.3);
            let (b_in, in_b) = random(rng, &[cd], 0.1);
            let (w_out, out_w) = random(rng, &[dim, cd], 0.3);
            let (b_out, out_b) = random(rng, &[dim], 0.1);
            let vq = vq
                .with_projections(
                    Projection::new(w_in, Some(b_in)).unwrap(),
                    Projection::new(w_out, Some(b_out)).unwrap(),
                )
                .unwrap();
            Stage {
                vq,
                codebook,
                codebook_dim,
                projections: Some((in_w, in_b, out_w, out_b)),
            }
        }
    }
}

fn affine(w: &[f64], b: &[f64], v: &[f64]) -> Vec<f64> {
    b.iter()
        .enumerate()
        .map(|(o, &bias)| {
            bias + v
                .iter()
                .enumerate()
                .map(|(i, &x)| w[o * v.len() + i] * x)
                .sum::<f64>()
        })
        .collect()
}

/// What the search minimises, in f64.
fn score(v: &[f64], c: &[f64], distance: Distance) -> f64 {
    match distance {
        Distance::Euclidean | Distance::Cdist => {
            v.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum()
        }
        Distance::Cosine => {
            let norm = |u: &[f64]| u.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            -v.iter().zip(c).map(|(a, b)| a * b).sum::<f64>() / (norm(v) * norm(c))
        }
    }
}

/// Best index and the scores of the best and the runner-up.
fn nearest(v: &[f64], st: &Stage, distance: Distance) -> (usize, f64, f64) {
    let scores: Vec<f64> = st
        .codebook
        .chunks(st.codebook_dim)
        .map(|c| score(v, c, distance))
        .collect();
    let best = (0..scores.len()).fold(0, |b, i| if scores[i] < scores[b] { i } else { b });
    let second = (0..scores.len())
        .filter(|&i| i != best)
        .map(|i| scores[i])
        .fold(f64::INFINITY, f64::min);
    (best, scores[best], second)
}

fn frame(x: &[f64], dim: usize, frames: usize, b: usize, t: usize) -> Vec<f64> {
    (0..dim).map(|c| x[(b * dim + c) * frames + t]).collect()
}

/// Relative margin under which f32 and f64 may disagree on the nearest entry.
fn tie_margin(best: f64) -> f64 {
    1e-5 * (1.0 + best.abs())
}

/// Checks codes `[batch, n_q, frames]` stage by stage against an f64 residual search. A frame is
/// checked until its first near-tie, after which f32 and f64 residuals may rightly part ways.
/// Returns how many codes were checked exactly.
fn check_residual_codes(
    stages: &[Stage],
    x: &[f64],
    codes: &[u32],
    dims: (usize, usize, usize),
    distance: Distance,
) -> usize {
    let (batch, dim, frames) = dims;
    let n_q = codes.len() / (batch * frames);
    let mut exact = 0;
    for b in 0..batch {
        for t in 0..frames {
            let mut residual = frame(x, dim, frames, b, t);
            for (q, st) in stages.iter().take(n_q).enumerate() {
                let ours = codes[(b * n_q + q) * frames + t] as usize;
                let latent = match &st.projections {
                    Some((w, bias, _, _)) => affine(w, bias, &residual),
                    None => residual.clone(),
                };
                let (best, best_score, second) = nearest(&latent, st, distance);
                let entry = &st.codebook[ours * st.codebook_dim..(ours + 1) * st.codebook_dim];
                let ours_score = score(&latent, entry, distance);
                assert!(
                    ours_score <= best_score + tie_margin(best_score),
                    "frame ({b}, {t}) stage {q}: code {ours} scores {ours_score}, best {best} scores {best_score}"
                );
                if second - best_score <= tie_margin(best_score) {
                    break;
                }
                assert_eq!(ours, best, "frame ({b}, {t}) stage {q}");
                exact += 1;
                let out = match &st.projections {
                    Some((_, _, w, bias)) => affine(w, bias, entry),
                    None => entry.to_vec(),
                };
                residual.iter_mut().zip(&out).for_each(|(r, o)| *r -= o);
            }
        }
    }
    exact
}

#[test]
fn vq_codes_are_the_exact_nearest_entries() {
    for (seed, distance) in DISTANCES.iter().enumerate() {
        for (cd, size) in [(None, 64), (Some(8), 64), (None, 1024), (None, 1)] {
            let mut rng = rng(seed as u64 * 10 + size as u64);
            let st = stage(&mut rng, 32, size, cd, *distance);
            let (x, xs) = random(&mut rng, &[2, 32, 50], 1.0);
            let codes = st.vq.encode(&x).unwrap();
            assert_eq!(codes.dims(), &[2, 50]);
            let codes = to_u32s(&codes);
            // A single stage is the residual check with n_q = 1.
            let exact = check_residual_codes(
                std::slice::from_ref(&st),
                &xs,
                &codes,
                (2, 32, 50),
                *distance,
            );
            assert!(
                exact >= 95,
                "{distance:?}: only {exact} of 100 codes clear of near-ties"
            );
        }
    }
}

#[test]
fn rvq_codes_follow_the_f64_residuals() {
    for (seed, distance) in DISTANCES.iter().enumerate() {
        for cd in [None, Some(8)] {
            let mut rng = rng(100 + seed as u64);
            let stages: Vec<Stage> = (0..6)
                .map(|_| stage(&mut rng, 32, 64, cd, *distance))
                .collect();
            let rvq = ResidualVectorQuantizer::new(stages.iter().map(|s| s.vq.clone()).collect())
                .unwrap();
            let (x, xs) = random(&mut rng, &[2, 32, 40], 2.0);
            let codes = rvq.encode(&x).unwrap();
            assert_eq!(codes.dims(), &[2, 6, 40]);
            let exact =
                check_residual_codes(&stages, &xs, &to_u32s(&codes), (2, 32, 40), *distance);
            assert!(
                exact >= 6 * 80 * 9 / 10,
                "{distance:?} {cd:?}: only {exact} codes checked"
            );
        }
    }
}

#[test]
fn rvq_with_fewer_quantizers_uses_the_first_stages_only() {
    let mut rng = rng(7);
    let stages: Vec<VectorQuantizer> = (0..5)
        .map(|_| stage(&mut rng, 16, 32, Some(4), Distance::Cosine).vq)
        .collect();
    let rvq = ResidualVectorQuantizer::new(stages.clone()).unwrap();
    let (x, _) = random(&mut rng, &[3, 16, 20], 1.0);
    let all = rvq.encode(&x).unwrap();
    for n_q in 1..=5 {
        let codes = rvq.encode_n(&x, n_q).unwrap();
        assert_eq!(codes.dims(), &[3, n_q, 20]);
        assert_eq!(
            to_u32s(&codes),
            to_u32s(&all.i((.., ..n_q, ..)).unwrap().contiguous().unwrap())
        );
        // A residual quantizer made of only the first n_q stages gives the same codes.
        let prefix = ResidualVectorQuantizer::new(stages[..n_q].to_vec()).unwrap();
        assert_eq!(to_u32s(&prefix.encode(&x).unwrap()), to_u32s(&codes));

        // Decoding n_q codebooks sums exactly the first n_q stages' entries.
        let decoded = rvq.decode(&codes).unwrap();
        let mut sum = Tensor::zeros((3, 16, 20), DType::F32, &Device::Cpu).unwrap();
        for (q, st) in stages[..n_q].iter().enumerate() {
            let stage_codes = codes.i((.., q, ..)).unwrap().contiguous().unwrap();
            sum = (sum + st.decode(&stage_codes).unwrap()).unwrap();
        }
        assert!(max_abs_diff(&decoded, &sum) < 1e-6);
        let (quantize_codes, quantized) = rvq.quantize(&x, n_q).unwrap();
        assert_eq!(to_u32s(&quantize_codes), to_u32s(&codes));
        // Without straight-through the forward output is the decoded sum.
        assert!(max_abs_diff(&quantized, &decoded) < 1e-6);
    }
}

#[test]
fn straight_through_changes_rounding_only() {
    let mut rng = rng(8);
    let stages: Vec<VectorQuantizer> = (0..4)
        .map(|_| {
            stage(&mut rng, 16, 32, Some(4), Distance::Cosine)
                .vq
                .with_straight_through(true)
        })
        .collect();
    let rvq = ResidualVectorQuantizer::new(stages).unwrap();
    let (x, _) = random(&mut rng, &[2, 16, 30], 1.0);
    let (codes, quantized) = rvq.quantize(&x, 4).unwrap();
    assert!(max_abs_diff(&quantized, &rvq.decode(&codes).unwrap()) < 1e-5);
}

#[test]
fn ties_go_to_the_first_index_like_torch() {
    let dim = 6;
    let mut rng = rng(9);
    let (book, _) = random(&mut rng, &[10, dim], 1.0);
    // Entry 7 duplicates entry 2; entry 8 is entry 4 doubled (the same direction).
    let entry = |i: usize| book.i(i).unwrap();
    let rows: Vec<Tensor> = (0..10)
        .map(|i| match i {
            7 => entry(2),
            8 => (entry(4) * 2.0).unwrap(),
            _ => entry(i),
        })
        .collect();
    let book = Tensor::stack(&rows, 0).unwrap();
    let at = |i: usize| book.i(i).unwrap().reshape((1, dim, 1)).unwrap();
    for distance in DISTANCES {
        let vq = VectorQuantizer::new(book.clone(), distance).unwrap();
        assert_eq!(
            to_u32s(&vq.encode(&at(7)).unwrap()),
            [2],
            "{distance:?}: duplicate entry"
        );
        let near = (at(2) + 1e-3).unwrap();
        assert_eq!(
            to_u32s(&vq.encode(&near).unwrap()),
            [2],
            "{distance:?}: near duplicate"
        );
    }
    let cosine = VectorQuantizer::new(book.clone(), Distance::Cosine).unwrap();
    assert_eq!(
        to_u32s(&cosine.encode(&at(8)).unwrap()),
        [4],
        "parallel entries tie under cosine"
    );
    let euclidean = VectorQuantizer::new(book.clone(), Distance::Euclidean).unwrap();
    assert_eq!(to_u32s(&euclidean.encode(&at(8)).unwrap()), [8]);
}

#[test]
fn vq_decode_then_encode_is_the_identity() {
    for distance in DISTANCES {
        let mut rng = rng(11);
        let (book, _) = random(&mut rng, &[256, 16], 1.0);
        let vq = VectorQuantizer::new(book.clone(), distance).unwrap();
        let codes = random_codes(&mut rng, &[3, 40], 256);
        let decoded = vq.decode(&codes).unwrap();
        assert_eq!(decoded.dims(), &[3, 16, 40]);
        // Decoding returns the stored entries, not normalised ones.
        let entry = book.i(to_u32s(&codes)[0] as usize).unwrap();
        assert_eq!(max_abs_diff(&decoded.i((0, .., 0)).unwrap(), &entry), 0.0);
        assert_eq!(
            to_u32s(&vq.encode(&decoded).unwrap()),
            to_u32s(&codes),
            "{distance:?}"
        );
    }
}

#[test]
fn conv_and_linear_projection_weights_are_the_same_map() {
    let mut rng = rng(12);
    let (w, _) = random(&mut rng, &[4, 16], 0.5);
    let (b, _) = random(&mut rng, &[4], 0.5);
    let linear = Projection::new(w.clone(), Some(b.clone())).unwrap();
    let conv = Projection::new(w.unsqueeze(2).unwrap(), Some(b.clone())).unwrap();
    let (x, xs) = random(&mut rng, &[2, 16, 5], 1.0);
    let (y_linear, y_conv) = (linear.forward(&x).unwrap(), conv.forward(&x).unwrap());
    assert_eq!(y_linear.dims(), &[2, 4, 5]);
    assert_eq!(max_abs_diff(&y_linear, &y_conv), 0.0);
    let ws = to_f64s(&w);
    let bs = to_f64s(&b);
    let ys = to_f64s(&y_linear);
    for (bb, t) in [(0, 0), (1, 3)] {
        let expected = affine(&ws, &bs, &frame(&xs, 16, 5, bb, t));
        for (o, e) in expected.iter().enumerate() {
            assert!((ys[(bb * 4 + o) * 5 + t] - e).abs() < 1e-5);
        }
    }
}

#[test]
fn f64_latents_and_empty_inputs() {
    let mut rng = rng(13);
    let st = stage(&mut rng, 8, 16, Some(3), Distance::Euclidean);
    let rvq = ResidualVectorQuantizer::new(vec![st.vq.clone(), st.vq.clone()]).unwrap();
    let (x, _) = random(&mut rng, &[2, 8, 10], 1.0);
    let x64 = x.to_dtype(DType::F64).unwrap();
    assert_eq!(
        to_u32s(&st.vq.encode(&x64).unwrap()),
        to_u32s(&st.vq.encode(&x).unwrap())
    );

    let empty = Tensor::zeros((2, 8, 0), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(st.vq.encode(&empty).unwrap().dims(), &[2, 0]);
    assert_eq!(rvq.encode_n(&empty, 1).unwrap().dims(), &[2, 1, 0]);
    let no_codes = Tensor::zeros((2, 2, 0), DType::U32, &Device::Cpu).unwrap();
    assert_eq!(rvq.decode(&no_codes).unwrap().dims(), &[2, 8, 0]);
    let (codes, quantized) = rvq.quantize(&empty, 2).unwrap();
    assert_eq!(
        (codes.dims(), quantized.dims()),
        (&[2usize, 2, 0][..], &[2usize, 8, 0][..])
    );
}
