//! Bad arguments give `Error::Invalid` with a message that says what was wrong, never a panic.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use tessera_core::Error;
use tessera_core::quant::{
    Distance, Fsq, Lfq, Projection, Quantizer, ResidualVectorQuantizer, VectorQuantizer, VqLayout,
    codebook_from_ema,
};

fn zeros(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(shape, dtype, &Device::Cpu).unwrap()
}

fn ones(shape: &[usize]) -> Tensor {
    Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap()
}

/// Asserts `result` is `Error::Invalid` whose message contains every one of `needles`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: tessera_core::Result<T>, needles: &[&str]) {
    match result {
        Err(Error::Invalid(message)) => {
            for needle in needles {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
        }
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

fn vq(size: usize, dim: usize) -> VectorQuantizer {
    let book = Tensor::arange(0f32, (size * dim) as f32, &Device::Cpu)
        .unwrap()
        .reshape((size, dim))
        .unwrap();
    VectorQuantizer::new(book, Distance::Euclidean).unwrap()
}

#[test]
fn encode_rejects_malformed_latents() {
    let q = vq(8, 4);
    assert_invalid(
        q.encode(&zeros(&[4, 10], DType::F32)),
        &["[batch, 4, frames]", "[4, 10]"],
    );
    assert_invalid(
        q.encode(&zeros(&[1, 5, 10], DType::F32)),
        &["expected 4 channels", "[1, 5, 10]"],
    );
    assert_invalid(
        q.encode(&zeros(&[1, 4, 10], DType::U32)),
        &["floating point"],
    );
    let rvq = ResidualVectorQuantizer::new(vec![vq(8, 4), vq(8, 4)]).unwrap();
    assert_invalid(
        rvq.encode(&zeros(&[1, 4, 1, 2], DType::F32)),
        &["[batch, 4, frames]"],
    );
    let fsq = Fsq::new(&[5, 5], &Device::Cpu).unwrap();
    assert_invalid(
        fsq.encode(&zeros(&[1, 3, 2], DType::F32)),
        &["expected 2 channels"],
    );
    let lfq = Lfq::new(6, &Device::Cpu).unwrap();
    assert_invalid(
        lfq.encode(&zeros(&[6, 2], DType::F32)),
        &["[batch, 6, frames]"],
    );
}

#[test]
fn decode_rejects_out_of_range_and_malformed_codes() {
    let codes =
        |values: &[u32]| Tensor::from_slice(values, (1, values.len()), &Device::Cpu).unwrap();
    let q = vq(8, 4);
    assert_invalid(q.decode(&codes(&[0, 7, 8])), &["code 8", "8 entries"]);
    assert_invalid(q.decode(&zeros(&[1, 3], DType::I64)), &["u32", "I64"]);
    assert_invalid(q.decode(&zeros(&[3], DType::U32)), &["[batch, frames]"]);
    let fsq = Fsq::new(&[8, 5], &Device::Cpu).unwrap();
    assert_invalid(fsq.decode(&codes(&[39, 40])), &["code 40", "40 entries"]);
    let lfq = Lfq::new(4, &Device::Cpu).unwrap();
    assert_invalid(lfq.decode(&codes(&[16])), &["code 16", "16 entries"]);
    assert_invalid(lfq.decode(&zeros(&[1, 2], DType::F32)), &["u32"]);
    let rvq = ResidualVectorQuantizer::new(vec![vq(8, 4), vq(8, 4)]).unwrap();
    assert_invalid(
        rvq.decode(&zeros(&[1, 3, 5], DType::U32)),
        &["3 codebooks", "1 to 2"],
    );
    assert_invalid(rvq.decode(&zeros(&[1, 0, 5], DType::U32)), &["0 codebooks"]);
    assert_invalid(
        rvq.decode(&zeros(&[2, 5], DType::U32)),
        &["[batch, n_q, frames]"],
    );
    let big = Tensor::from_slice(&[0u32, 1, 2, 9], (1, 2, 2), &Device::Cpu).unwrap();
    assert_invalid(rvq.decode(&big), &["code 9"]);
}

#[test]
fn rvq_rejects_bad_quantizer_counts_and_stages() {
    let rvq = ResidualVectorQuantizer::new(vec![vq(8, 4), vq(8, 4)]).unwrap();
    let x = zeros(&[1, 4, 3], DType::F32);
    assert_invalid(rvq.encode_n(&x, 0), &["0 quantizers", "1 to 2"]);
    assert_invalid(rvq.encode_n(&x, 3), &["3 quantizers"]);
    assert_invalid(rvq.quantize(&x, 3), &["3 quantizers"]);
    assert_invalid(
        ResidualVectorQuantizer::new(vec![]),
        &["at least one stage"],
    );
    assert_invalid(
        ResidualVectorQuantizer::new(vec![vq(8, 4), vq(8, 5)]),
        &["stage 1", "dim 5"],
    );
    assert_invalid(
        ResidualVectorQuantizer::new(vec![vq(8, 4), vq(16, 4)]),
        &["16 codes"],
    );
    let wrong = Projection::new(ones(&[3, 6]), None).unwrap();
    let back = Projection::new(ones(&[6, 3]), None).unwrap();
    assert_invalid(rvq.with_projections(wrong, back), &["4 channels"]);
}

#[test]
fn constructors_reject_bad_parameters() {
    assert_invalid(
        VectorQuantizer::new(ones(&[8]), Distance::Cosine),
        &["[entries, dim]"],
    );
    assert_invalid(
        VectorQuantizer::new(ones(&[0, 4]), Distance::Cosine),
        &["empty"],
    );
    assert_invalid(
        VectorQuantizer::new(zeros(&[8, 4], DType::U32), Distance::Cosine),
        &["floating point"],
    );
    assert_invalid(
        Projection::new(ones(&[2, 3, 4]), None),
        &["[out, in, 1]", "[2, 3, 4]"],
    );
    assert_invalid(
        Projection::new(ones(&[2, 3]), Some(ones(&[3]))),
        &["bias must be [2]"],
    );
    let in_proj = Projection::new(ones(&[5, 6]), None).unwrap();
    let out_proj = Projection::new(ones(&[6, 5]), None).unwrap();
    assert_invalid(
        vq(8, 4).with_projections(in_proj.clone(), out_proj.clone()),
        &["4 channels"],
    );
    let odd_out = Projection::new(ones(&[7, 4]), None).unwrap();
    let in4 = Projection::new(ones(&[4, 6]), None).unwrap();
    assert_invalid(
        vq(8, 4).with_projections(in4, odd_out),
        &["takes 6", "returns 7"],
    );

    assert_invalid(Fsq::new(&[], &Device::Cpu), &["at least one"]);
    assert_invalid(Fsq::new(&[8, 1], &Device::Cpu), &["between 2", "got 1"]);
    assert_invalid(Fsq::new(&[65536, 65536, 2], &Device::Cpu), &["2^32"]);
    assert_invalid(
        Fsq::new(&[5, 5], &Device::Cpu)
            .unwrap()
            .with_projections(in_proj.clone(), out_proj.clone()),
        &["2 channels"],
    );
    assert_invalid(Lfq::new(0, &Device::Cpu), &["1 to 32 bits", "got 0"]);
    assert_invalid(Lfq::new(33, &Device::Cpu), &["got 33"]);
    let lfq = Lfq::new(3, &Device::Cpu).unwrap();
    assert_invalid(lfq.clone().with_codebook_scale(0.0), &["positive"]);
    assert_invalid(lfq.clone().with_codebook_scale(f64::NAN), &["positive"]);
    assert_invalid(lfq.with_projections(in_proj, out_proj), &["3 channels"]);
    assert_invalid(
        codebook_from_ema(&ones(&[4, 2]), &ones(&[3]), 1e-5),
        &["must be [4]"],
    );
}

#[test]
fn loading_rejects_half_projection_pairs_and_bad_codebooks() {
    let vb = |tensors: Vec<(&str, Tensor)>| {
        let map: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
    };
    let only_in = vb(vec![
        ("q.codebook.weight", ones(&[8, 2])),
        ("q.in_proj.weight", ones(&[2, 6, 1])),
    ]);
    assert_invalid(
        VectorQuantizer::load(&only_in.pp("q"), &VqLayout::DAC),
        &["q: has only one", "in_proj.weight"],
    );
    let bad_book = vb(vec![("q.codebook.weight", ones(&[8]))]);
    assert_invalid(
        VectorQuantizer::load(&bad_book.pp("q"), &VqLayout::DAC),
        &["q: codebook must be"],
    );
    let only_out = vb(vec![("project_out.weight", ones(&[6, 2]))]);
    assert_invalid(
        Fsq::load(&only_out, &[5, 5]),
        &["only one of project_in.weight"],
    );
    // A missing stage is candle's own not-found error, with the key in it.
    let one_stage = vb(vec![("layers.0._codebook.embed", ones(&[8, 2]))]);
    let missing = ResidualVectorQuantizer::load(&one_stage, "layers", 2, &VqLayout::ENCODEC);
    assert!(format!("{:?}", missing.unwrap_err()).contains("layers.1._codebook.embed"));
}
