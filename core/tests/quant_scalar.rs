//! FSQ and LFQ against their published definitions evaluated in f64, and their code <-> value
//! round trips.

mod quant_common;

use candle_core::{DType, Device, Tensor};
use quant_common::*;
use tessera_core::quant::{BitOrder, Fsq, Lfq, Projection, Quantizer};

/// One channel of FSQ in f64: the rounded level (before centring) and whether the value before
/// rounding is too close to a half-integer for f32 and f64 to be sure to agree.
fn fsq_level(z: f64, levels: u32) -> (f64, bool) {
    let half_l = f64::from(levels - 1) * 1.001 / 2.0;
    let offset = if levels.is_multiple_of(2) { 0.5 } else { 0.0 };
    let shift = (offset / half_l).atanh();
    let bounded = (z + shift).tanh() * half_l - offset;
    let near_half = ((bounded - bounded.floor()) - 0.5).abs() < 1e-4;
    (bounded.round_ties_even(), near_half)
}

fn basis(levels: &[u32]) -> Vec<u64> {
    levels
        .iter()
        .scan(1u64, |place, &l| {
            let this = *place;
            *place *= u64::from(l);
            Some(this)
        })
        .collect()
}

/// Checks FSQ codes and values of `x` (`[batch, levels.len(), frames]`, given in f64 as `xs`).
fn check_fsq_definition(fsq: &Fsq, levels: &[u32], x: &Tensor, xs: &[f64]) -> usize {
    let (batch, channels, frames) = x.dims3().unwrap();
    let (codes, values) = fsq.quantize(x).unwrap();
    let (codes, values) = (to_u32s(&codes), to_f64s(&values));
    let place = basis(levels);
    let mut checked = 0;
    for b in 0..batch {
        for t in 0..frames {
            let mut code = 0u64;
            let mut ambiguous = false;
            for (c, &l) in levels.iter().enumerate() {
                let index = (b * channels + c) * frames + t;
                let (rounded, near_half) = fsq_level(xs[index], l);
                ambiguous |= near_half;
                let half_width = f64::from(l / 2);
                code += (rounded + half_width) as u64 * place[c];
                if !near_half {
                    // f32 division of small integers is exact to the f32 rounding of the quotient.
                    let expected = (rounded / half_width) as f32;
                    assert_eq!(values[index] as f32, expected, "value ({b}, {c}, {t})");
                }
            }
            if !ambiguous {
                assert_eq!(u64::from(codes[b * frames + t]), code, "code ({b}, {t})");
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn fsq_follows_the_definition() {
    for (seed, levels) in [
        vec![8, 5, 5, 5],
        vec![7, 5, 4, 3],
        vec![8, 8, 8, 6, 5],
        vec![2, 3, 16],
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(20 + seed as u64);
        let fsq = Fsq::new(&levels, &Device::Cpu).unwrap();
        let (x, xs) = random(&mut rng, &[2, levels.len(), 64], 3.0);
        let checked = check_fsq_definition(&fsq, &levels, &x, &xs);
        assert!(
            checked >= 120,
            "{levels:?}: only {checked} of 128 frames unambiguous"
        );
    }
}

#[test]
fn fsq_with_projections_follows_the_definition() {
    let levels = [8u32, 5, 5, 5];
    let mut rng = rng(30);
    let (w_in, _) = random(&mut rng, &[4, 24, 1], 0.5);
    let (b_in, _) = random(&mut rng, &[4], 0.2);
    let (w_out, _) = random(&mut rng, &[24, 4], 0.5);
    let in_proj = Projection::new(w_in, Some(b_in)).unwrap();
    let out_proj = Projection::new(w_out, None).unwrap();
    let fsq = Fsq::new(&levels, &Device::Cpu)
        .unwrap()
        .with_projections(in_proj.clone(), out_proj.clone())
        .unwrap();
    assert_eq!(fsq.dim(), 24);
    let (x, _) = random(&mut rng, &[2, 24, 40], 2.0);
    // The projected latents are the input of plain FSQ; the output is projected back.
    let projected = in_proj.forward(&x).unwrap();
    let plain = Fsq::new(&levels, &Device::Cpu).unwrap();
    let (plain_codes, plain_values) = plain.quantize(&projected).unwrap();
    let (codes, quantized) = fsq.quantize(&x).unwrap();
    assert_eq!(to_u32s(&codes), to_u32s(&plain_codes));
    assert!(max_abs_diff(&quantized, &out_proj.forward(&plain_values).unwrap()) < 1e-6);
    let checked = check_fsq_definition(&plain, &levels, &projected, &to_f64s(&projected));
    assert!(checked >= 75);
}

#[test]
fn fsq_codes_and_values_are_a_bijection() {
    for levels in [vec![8, 5, 5, 5], vec![7, 5, 4, 3], vec![2, 3, 2]] {
        let fsq = Fsq::new(&levels, &Device::Cpu).unwrap();
        let size = fsq.codebook_size();
        let all: Vec<u32> = (0..size as u32).collect();
        let codes = Tensor::from_vec(all.clone(), (1, size), &Device::Cpu).unwrap();
        let values = to_f64s(&fsq.decode(&codes).unwrap());
        let place = basis(&levels);
        let mut latents = vec![0f32; levels.len() * size];
        for (t, &code) in all.iter().enumerate() {
            let mut index = 0u64;
            for (c, &l) in levels.iter().enumerate() {
                let half_width = f64::from(l / 2);
                let v = values[c * size + t];
                assert!((-1.0..=1.0).contains(&v), "value {v} of code {code}");
                // Channel 0 is the least significant digit.
                // v = level / half_width in f32, so v * half_width is an integer up to rounding.
                let digit = v * half_width + half_width;
                assert!((digit - digit.round()).abs() < 1e-6);
                let digit = digit.round();
                assert_eq!(digit, ((u64::from(code) / place[c]) % u64::from(l)) as f64);
                index += digit as u64 * place[c];
                // The latent whose bound lands exactly on this level, to encode back.
                let half_l = f64::from(l - 1) * 1.001 / 2.0;
                let offset = if l.is_multiple_of(2) { 0.5 } else { 0.0 };
                let rounded = digit - half_width;
                latents[c * size + t] =
                    (((rounded + offset) / half_l).atanh() - (offset / half_l).atanh()) as f32;
            }
            assert_eq!(index, u64::from(code));
        }
        let x = Tensor::from_vec(latents, (1, levels.len(), size), &Device::Cpu).unwrap();
        assert_eq!(to_u32s(&fsq.encode(&x).unwrap()), all, "{levels:?}");
    }
}

#[test]
fn fsq_zero_latent_is_the_centre_level() {
    let levels = [8u32, 7, 6, 5];
    let fsq = Fsq::new(&levels, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 4, 1), DType::F32, &Device::Cpu).unwrap();
    let (codes, values) = fsq.quantize(&x).unwrap();
    assert_eq!(to_f64s(&values), [0.0; 4]);
    let centre: u64 = levels
        .iter()
        .zip(basis(&levels))
        .map(|(&l, p)| u64::from(l / 2) * p)
        .sum();
    assert_eq!(u64::from(to_u32s(&codes)[0]), centre);
}

#[test]
fn lfq_follows_the_definition() {
    for (bits, order) in [
        (10, BitOrder::MsbFirst),
        (10, BitOrder::LsbFirst),
        (32, BitOrder::MsbFirst),
    ] {
        let mut rng = rng(40 + bits as u64);
        let lfq = Lfq::new(bits, &Device::Cpu)
            .unwrap()
            .with_codebook_scale(0.25)
            .unwrap()
            .with_bit_order(order)
            .unwrap();
        let (x, xs) = random(&mut rng, &[3, bits, 30], 1.0);
        // Exact zeros are not positive.
        let x = x
            .slice_assign(
                &[0..1, 0..bits, 0..1],
                &Tensor::zeros((1, bits, 1), DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        let (codes, values) = lfq.quantize(&x).unwrap();
        let (codes, values) = (to_u32s(&codes), to_f64s(&values));
        for b in 0..3 {
            for t in 0..30 {
                let mut code = 0u64;
                for c in 0..bits {
                    let index = (b * bits + c) * 30 + t;
                    let z = if b == 0 && t == 0 { 0.0 } else { xs[index] };
                    let bit = u64::from(z > 0.0);
                    let position = match order {
                        BitOrder::MsbFirst => bits - 1 - c,
                        BitOrder::LsbFirst => c,
                    };
                    code |= bit << position;
                    assert_eq!(values[index], if bit == 1 { 0.25 } else { -0.25 });
                }
                assert_eq!(u64::from(codes[b * 30 + t]), code, "{order:?} ({b}, {t})");
            }
        }
        assert_eq!(codes[0], 0, "all-zero latents give code 0");
    }
}

#[test]
fn lfq_decode_then_encode_is_the_identity() {
    for (bits, order) in [
        (10, BitOrder::MsbFirst),
        (10, BitOrder::LsbFirst),
        (1, BitOrder::MsbFirst),
    ] {
        let lfq = Lfq::new(bits, &Device::Cpu)
            .unwrap()
            .with_bit_order(order)
            .unwrap();
        let size = lfq.codebook_size() as u32;
        let codes = Tensor::from_vec(
            (0..size).collect::<Vec<_>>(),
            (1, size as usize),
            &Device::Cpu,
        )
        .unwrap();
        let decoded = lfq.decode(&codes).unwrap();
        assert_eq!(to_u32s(&lfq.encode(&decoded).unwrap()), to_u32s(&codes));
    }
    let lfq = Lfq::new(32, &Device::Cpu).unwrap();
    let codes = random_codes(&mut rng(50), &[4, 100], 1 << 32);
    assert_eq!(
        to_u32s(&lfq.encode(&lfq.decode(&codes).unwrap()).unwrap()),
        to_u32s(&codes)
    );
}

#[test]
fn scalar_quantizers_take_empty_inputs() {
    let fsq = Fsq::new(&[5, 5], &Device::Cpu).unwrap();
    let lfq = Lfq::new(2, &Device::Cpu).unwrap();
    let empty = Tensor::zeros((3, 2, 0), DType::F32, &Device::Cpu).unwrap();
    let no_codes = Tensor::zeros((3, 0), DType::U32, &Device::Cpu).unwrap();
    for q in [&fsq as &dyn Quantizer, &lfq] {
        assert_eq!(q.encode(&empty).unwrap().dims(), &[3, 0]);
        assert_eq!(q.decode(&no_codes).unwrap().dims(), &[3, 2, 0]);
    }
}
