//! Weight loading against checkpoints written by torch (scripts/reference/weights.py).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tessera_core::{Checkpoint, Error, KeyMap, WeightStore};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.to_dtype(DType::F32)
        .unwrap()
        .sub(&b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check_against_expected(dir: &str, keymap: &KeyMap, expected: &Path) {
    let ckpt = Checkpoint::open(fixture(dir)).unwrap();
    let store = ckpt.store(keymap).unwrap();
    let want = candle_core::safetensors::load(expected, &Device::Cpu).unwrap();
    let mut keys: Vec<_> = want.keys().cloned().collect();
    keys.sort();
    assert_eq!(store.keys(), keys, "{dir}: folded keys");
    for (k, w) in &want {
        let got = store.load(k).unwrap();
        let err = max_abs_diff(&got, w);
        assert!(err < 1e-6, "{dir}: {k} differs from torch by {err}");
    }
    assert!(store.unused_keys().is_empty());
}

#[test]
fn folds_old_style_weight_norm_from_a_pickle() {
    check_against_expected(
        "weight_norm_old_bin",
        &KeyMap::new(),
        &fixture("weight_norm_old_bin/expected.safetensors"),
    );
}

#[test]
fn folds_parametrized_weight_norm_from_safetensors() {
    check_against_expected(
        "weight_norm_param_st",
        &KeyMap::new(),
        &fixture("weight_norm_param_st/expected.safetensors"),
    );
}

#[test]
fn reads_a_wrapped_state_dict_with_renamed_keys() {
    check_against_expected(
        "wrapped_bin",
        &KeyMap::new().prefix("model.", ""),
        &fixture("weight_norm_old_bin/expected.safetensors"),
    );
}

#[test]
fn reads_sharded_bf16_checkpoints() {
    let ckpt = Checkpoint::open(fixture("sharded")).unwrap();
    assert_eq!(ckpt.weights.len(), 2);
    let store = ckpt.store(&KeyMap::new()).unwrap();
    let want =
        candle_core::safetensors::load(fixture("sharded/expected_f32.safetensors"), &Device::Cpu)
            .unwrap();
    for (k, w) in &want {
        let got = store.load(k).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        assert_eq!(max_abs_diff(&got, w), 0.0, "{k}");
    }
}

#[test]
fn var_builder_checks_shapes_and_names_the_file() {
    let ckpt = Checkpoint::open(fixture("weight_norm_param_st")).unwrap();
    let vb = ckpt
        .store(&KeyMap::new())
        .unwrap()
        .into_var_builder(DType::F32, &Device::Cpu);
    let w = vb.get((5, 3, 7), "conv.weight").unwrap();
    assert_eq!(w.dims(), &[5, 3, 7]);
    let e = vb.get((5, 3, 8), "conv.weight").unwrap_err().to_string();
    assert!(
        e.contains("conv.weight") && e.contains("model.safetensors") && e.contains("[5, 3, 7]"),
        "{e}"
    );
    let e = vb.get((2,), "nope.bias").unwrap_err().to_string();
    assert!(e.contains("nope.bias") && e.contains("missing"), "{e}");
}

#[test]
fn unused_keys_reveal_a_mismatched_checkpoint() {
    let ckpt = Checkpoint::open(fixture("weight_norm_param_st")).unwrap();
    let store = ckpt.store(&KeyMap::new().drop("up1.")).unwrap();
    store.load("conv.weight").unwrap();
    let unused = store.unused_keys();
    assert!(unused.contains(&"lin.weight".to_string()));
    assert!(!unused.contains(&"conv.weight".to_string()));
    assert!(!store.contains("up1.weight"));
}

#[test]
fn colliding_renames_are_an_error() {
    let ckpt = Checkpoint::open(fixture("weight_norm_param_st")).unwrap();
    let e = ckpt
        .store(&KeyMap::new().replace("up1.", "up."))
        .err()
        .expect("two keys map to one");
    assert!(e.to_string().contains("both map to"), "{e}");
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn broken_checkpoints_give_one_line_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();

    let e = Checkpoint::open(tmp.path().join("absent")).unwrap_err();
    assert!(
        e.to_string().contains("no such checkpoint directory"),
        "{e}"
    );

    let no_cfg = tmp.path().join("no_cfg");
    std::fs::create_dir(&no_cfg).unwrap();
    let e = Checkpoint::open(&no_cfg).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");

    let no_w = tmp.path().join("no_weights");
    std::fs::create_dir(&no_w).unwrap();
    std::fs::write(no_w.join("config.json"), "{}").unwrap();
    let e = Checkpoint::open(&no_w).unwrap_err();
    assert!(matches!(e, Error::MissingWeights(_)), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    // Truncated safetensors.
    let trunc = tmp.path().join("trunc");
    copy_fixture("weight_norm_param_st", &trunc);
    let st = trunc.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = Checkpoint::open(&trunc)
        .unwrap()
        .store(&KeyMap::new())
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("model.safetensors")
            && e.to_string().contains("not a valid safetensors"),
        "{e}"
    );

    // Corrupt pickle.
    let bad_bin = tmp.path().join("bad_bin");
    copy_fixture("weight_norm_old_bin", &bad_bin);
    std::fs::write(
        bad_bin.join("pytorch_model.bin"),
        b"PK\x03\x04 definitely not a zip",
    )
    .unwrap();
    let e = Checkpoint::open(&bad_bin)
        .unwrap()
        .store(&KeyMap::new())
        .err()
        .unwrap();
    assert!(e.to_string().contains("pytorch_model.bin"), "{e}");

    // Empty weights file.
    std::fs::write(bad_bin.join("pytorch_model.bin"), b"").unwrap();
    let e = Checkpoint::open(&bad_bin)
        .unwrap()
        .store(&KeyMap::new())
        .err()
        .unwrap();
    assert!(e.to_string().contains("empty"), "{e}");

    // Broken config.
    std::fs::write(bad_bin.join("config.json"), "{\"a\": ").unwrap();
    let e = Checkpoint::open(&bad_bin)
        .unwrap()
        .config_json()
        .unwrap_err();
    assert!(
        e.to_string().contains("config.json") && e.to_string().contains("invalid JSON"),
        "{e}"
    );

    // An index whose shard escapes the directory, and one whose shard is missing.
    let sh = tmp.path().join("sharded");
    copy_fixture("sharded", &sh);
    let idx = sh.join("model.safetensors.index.json");
    std::fs::write(&idx, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
    let e = Checkpoint::open(&sh).unwrap_err();
    assert!(
        e.to_string().contains("leaves the checkpoint directory"),
        "{e}"
    );
    std::fs::write(
        &idx,
        r#"{"weight_map": {"a": "model-00003-of-00003.safetensors"}}"#,
    )
    .unwrap();
    let e = Checkpoint::open(&sh).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");

    for e in [
        Checkpoint::open(&sh).unwrap_err().to_string(),
        Checkpoint::open(&no_w).unwrap_err().to_string(),
    ] {
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn store_from_explicit_files_rejects_unknown_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("weights.onnx");
    std::fs::write(&p, b"xx").unwrap();
    let e = WeightStore::open(&[p], &KeyMap::new()).err().unwrap();
    assert!(e.to_string().contains("unknown weights format"), "{e}");
}
