//! The quantizers against fixtures written by the reference implementations
//! (`scripts/reference/quantizers.py`): codes identical, latents within 1e-4.

mod quant_common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use quant_common::*;
use std::collections::HashMap;
use std::path::Path;
use tessera_core::quant::{
    Distance, Fsq, Lfq, Projection, Quantizer, ResidualVectorQuantizer, VectorQuantizer, VqLayout,
    codebook_from_ema,
};

const TOL: f32 = 1e-4;

fn var_builder(tensors: &HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu)
}

fn stage_count(tensors: &HashMap<String, Tensor>, key_of: impl Fn(usize) -> String) -> usize {
    (0..)
        .take_while(|&i| tensors.contains_key(&key_of(i)))
        .count()
}

/// Compares encode (all stages and 2), decode and, where given, the forward-pass output.
/// Returns the largest latent difference.
fn check_rvq(
    rvq: &ResidualVectorQuantizer,
    tensors: &HashMap<String, Tensor>,
    with_forward: bool,
    what: &str,
) -> f32 {
    let x = get(tensors, "input");
    let mut worst = 0f32;
    for n_q in [rvq.max_quantizers(), 2] {
        let reference = codes_u32(tensors, &format!("codes_nq{n_q}"));
        let codes = rvq.encode_n(x, n_q).unwrap();
        assert_codes_eq(&codes, &reference, &format!("{what} codes, n_q {n_q}"));
        let decoded = rvq.decode(&reference).unwrap();
        let expected = get(tensors, &format!("decoded_nq{n_q}"));
        worst = worst.max(assert_close(
            &decoded,
            expected,
            TOL,
            &format!("{what} decoded"),
        ));
        let (quantize_codes, quantized) = rvq.quantize(x, n_q).unwrap();
        assert_codes_eq(
            &quantize_codes,
            &reference,
            &format!("{what} quantize codes"),
        );
        let expected = if with_forward {
            get(tensors, &format!("quantized_nq{n_q}"))
        } else {
            expected
        };
        worst = worst.max(assert_close(
            &quantized,
            expected,
            TOL,
            &format!("{what} quantized"),
        ));
    }
    if rvq.max_quantizers() == 4 {
        let all = rvq.encode(x).unwrap();
        assert_eq!(all.dims(), &[x.dim(0).unwrap(), 4, x.dim(2).unwrap()]);
    }
    worst
}

fn check_encodec(dir: &Path, name: &str) -> f32 {
    let tensors = load(dir, name);
    let n_q = stage_count(&tensors, |i| format!("layers.{i}._codebook.embed"));
    let rvq =
        ResidualVectorQuantizer::load(&var_builder(&tensors), "layers", n_q, &VqLayout::ENCODEC)
            .unwrap();
    assert_eq!(rvq.max_quantizers(), n_q);
    assert!(
        rvq.stages()
            .iter()
            .all(|s| s.distance() == Distance::Euclidean)
    );
    let worst = check_rvq(&rvq, &tensors, false, name);

    // The same quantizer built from plain tensors must agree exactly with the loaded one.
    let stages = (0..n_q)
        .map(|i| {
            let key = |k: &str| tensors.get(&format!("layers.{i}.{k}")).cloned();
            let vq =
                VectorQuantizer::new(key("_codebook.embed").unwrap(), Distance::Euclidean).unwrap();
            match key("project_in.weight") {
                Some(w_in) => vq
                    .with_projections(
                        Projection::new(w_in, key("project_in.bias")).unwrap(),
                        Projection::new(
                            key("project_out.weight").unwrap(),
                            key("project_out.bias"),
                        )
                        .unwrap(),
                    )
                    .unwrap(),
                None => vq,
            }
        })
        .collect();
    let from_tensors = ResidualVectorQuantizer::new(stages).unwrap();
    let x = get(&tensors, "input");
    assert_codes_eq(
        &from_tensors.encode(x).unwrap(),
        &codes_u32(&tensors, &format!("codes_nq{n_q}")),
        "built from tensors",
    );
    worst
}

fn check_dac(dir: &Path) -> f32 {
    let tensors = load(dir, "dac_rvq");
    let n_q = stage_count(&tensors, |i| format!("quantizers.{i}.codebook.weight"));
    let rvq =
        ResidualVectorQuantizer::load(&var_builder(&tensors), "quantizers", n_q, &VqLayout::DAC)
            .unwrap();
    let first = &rvq.stages()[0];
    assert_eq!(first.distance(), Distance::Cosine);
    assert_eq!(
        first.codebook_dim(),
        get(&tensors, "quantizers.0.codebook.weight")
            .dim(1)
            .unwrap()
    );
    assert!(first.projections().is_some());
    check_rvq(&rvq, &tensors, true, "dac_rvq")
}

fn check_moshi(dir: &Path) -> f32 {
    let tensors = load(dir, "moshi_rvq");
    let vb = var_builder(&tensors);
    let n_q = stage_count(&tensors, |i| {
        format!("vq.layers.{i}._codebook.embedding_sum")
    });
    // The EMA division must reproduce moshi's codebooks bit for bit.
    for i in 0..n_q {
        let layer = |k: &str| get(&tensors, &format!("vq.layers.{i}._codebook.{k}")).clone();
        let codebook =
            codebook_from_ema(&layer("embedding_sum"), &layer("cluster_usage"), 1e-5).unwrap();
        assert_eq!(
            max_abs_diff(&codebook, get(&tensors, &format!("embedding.{i}"))),
            0.0,
            "EMA codebook {i}"
        );
    }
    let rvq = ResidualVectorQuantizer::load(&vb.pp("vq"), "layers", n_q, &VqLayout::MOSHI)
        .unwrap()
        .with_projections(
            Projection::load(&vb, "input_proj").unwrap().unwrap(),
            Projection::load(&vb, "output_proj").unwrap().unwrap(),
        )
        .unwrap();
    assert_eq!(rvq.stages()[0].distance(), Distance::Cdist);
    check_rvq(&rvq, &tensors, false, "moshi_rvq")
}

fn check_fsq(dir: &Path, name: &str) -> f32 {
    let tensors = load(dir, name);
    let levels: Vec<u32> = get(&tensors, "levels")
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap();
    let fsq = Fsq::load(&var_builder(&tensors), &levels).unwrap();
    assert_eq!(
        fsq.codebook_size(),
        levels.iter().map(|&l| l as usize).product::<usize>()
    );
    let x = get(&tensors, "input");
    let reference = codes_u32(&tensors, "codes");
    assert_codes_eq(
        &fsq.encode(x).unwrap(),
        &reference,
        &format!("{name} codes"),
    );
    let (codes, quantized) = fsq.quantize(x).unwrap();
    assert_codes_eq(&codes, &reference, &format!("{name} quantize codes"));
    let mut worst = assert_close(&quantized, get(&tensors, "quantized"), TOL, name);
    let decoded = fsq.decode(&reference).unwrap();
    worst = worst.max(assert_close(&decoded, get(&tensors, "decoded"), TOL, name));
    worst
}

fn check_lfq(dir: &Path, name: &str) -> f32 {
    let tensors = load(dir, name);
    let bits = get(&tensors, "bits").to_vec1::<i64>().unwrap()[0] as usize;
    let scale = get(&tensors, "scale").to_vec1::<f64>().unwrap()[0];
    let lfq = Lfq::load(&var_builder(&tensors), bits)
        .unwrap()
        .with_codebook_scale(scale)
        .unwrap();
    let x = get(&tensors, "input");
    let reference = codes_u32(&tensors, "codes");
    assert_codes_eq(
        &lfq.encode(x).unwrap(),
        &reference,
        &format!("{name} codes"),
    );
    let (codes, quantized) = lfq.quantize(x).unwrap();
    assert_codes_eq(&codes, &reference, &format!("{name} quantize codes"));
    let mut worst = assert_close(&quantized, get(&tensors, "quantized"), TOL, name);
    let decoded = lfq.decode(&reference).unwrap();
    worst = worst.max(assert_close(&decoded, get(&tensors, "decoded"), TOL, name));
    worst
}

#[test]
fn encodec_rvq_matches_reference() {
    let diff = check_encodec(&fixture_dir(), "encodec_rvq");
    println!("max abs latent diff {diff:e}");
}

#[test]
fn encodec_rvq_with_linear_projections_matches_reference() {
    let diff = check_encodec(&fixture_dir(), "encodec_proj_rvq");
    println!("max abs latent diff {diff:e}");
}

#[test]
fn dac_factorised_cosine_rvq_matches_reference() {
    let diff = check_dac(&fixture_dir());
    println!("max abs latent diff {diff:e}");
}

#[test]
fn moshi_cdist_rvq_with_outer_projections_matches_reference() {
    let diff = check_moshi(&fixture_dir());
    println!("max abs latent diff {diff:e}");
}

#[test]
fn fsq_with_projections_matches_reference() {
    let diff = check_fsq(&fixture_dir(), "fsq_proj");
    println!("max abs latent diff {diff:e}");
}

#[test]
fn fsq_odd_and_even_levels_match_reference() {
    let diff = check_fsq(&fixture_dir(), "fsq");
    println!("max abs latent diff {diff:e}");
}

#[test]
fn lfq_with_projections_matches_reference() {
    let diff = check_lfq(&fixture_dir(), "lfq_proj");
    println!("max abs latent diff {diff:e}");
}

#[test]
fn lfq_scaled_matches_reference() {
    let diff = check_lfq(&fixture_dir(), "lfq");
    println!("max abs latent diff {diff:e}");
}

/// The real default sizes (EnCodec 24 kHz, DAC 44 kHz, Mimi, ...), from fixtures written by
/// `quantizers.py --full DIR`, too large to commit. Run with
/// `TESSERA_QUANT_FULL=DIR cargo test -p tessera-core --test quant_reference -- --ignored`.
#[test]
#[ignore = "needs full-size fixtures from scripts/reference/quantizers.py --full"]
fn full_size_configs_match_reference() {
    let dir = std::env::var("TESSERA_QUANT_FULL")
        .expect("set TESSERA_QUANT_FULL to the directory written by quantizers.py --full");
    let dir = Path::new(&dir);
    for (name, diff) in [
        ("encodec_rvq", check_encodec(dir, "encodec_rvq")),
        ("encodec_proj_rvq", check_encodec(dir, "encodec_proj_rvq")),
        ("dac_rvq", check_dac(dir)),
        ("moshi_rvq", check_moshi(dir)),
        ("fsq_proj", check_fsq(dir, "fsq_proj")),
        ("fsq", check_fsq(dir, "fsq")),
        ("lfq_proj", check_lfq(dir, "lfq_proj")),
        ("lfq", check_lfq(dir, "lfq")),
    ] {
        println!("{name}: codes identical, max abs latent diff {diff:e}");
    }
}
