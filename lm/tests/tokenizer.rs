//! The text tokenizer against the Python `tokenizers` library (scripts/reference/lm_tokenizer.py).

use std::path::{Path, PathBuf};

use tessera_lm::TextTokenizer;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn encodes_and_decodes_as_the_python_library() {
    let tok = TextTokenizer::from_checkpoint_dir(dir()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(
        tok.vocab_size() as u64,
        expected["vocab_size"].as_u64().unwrap()
    );
    for case in expected["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, false).unwrap(),
            ids(&case["ids"]),
            "{text:?}"
        );
        let with_special = ids(&case["ids_with_special"]);
        assert_eq!(tok.encode(text, true).unwrap(), with_special, "{text:?}");
        assert_eq!(
            tok.decode(&with_special, true).unwrap(),
            case["decoded"].as_str().unwrap()
        );
    }
    assert_eq!(tok.token_to_id("<|begin|>"), Some(0));
}

#[test]
fn missing_or_broken_files_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let err = TextTokenizer::from_checkpoint_dir(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tokenizer.json"), "{err}");
    let bad = tmp.path().join("tokenizer.json");
    std::fs::write(&bad, "{\"model\": 3}").unwrap();
    let err = TextTokenizer::from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("not a valid"),
        "{err}"
    );
}
