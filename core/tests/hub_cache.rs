//! Hub resolution without a network: the cache layout, and the offline error.

use tessera_core::{Error, hub};

#[test]
fn finds_cached_checkpoints_and_explains_missing_ones() {
    let home = tempfile::tempdir().unwrap();
    // The layout huggingface_hub writes: refs/main holds the commit, snapshots/<commit>/ the files.
    let repo = home.path().join("hub/models--acme--tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("config.json"), "{}").unwrap();

    // SAFETY: this test binary has a single test touching the environment.
    unsafe {
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    // Config alone is not a checkpoint.
    assert!(hub::cached_checkpoint("acme/tiny", None).is_none());
    std::fs::write(snap.join("model.safetensors"), b"x").unwrap();
    assert_eq!(hub::cached_checkpoint("acme/tiny", None).unwrap(), snap);
    assert_eq!(
        hub::resolve_checkpoint("acme/tiny", None, false).unwrap(),
        snap
    );

    let e = hub::resolve_checkpoint("acme/absent", None, false).unwrap_err();
    assert!(matches!(e, Error::MissingWeights(_)));
    let msg = e.to_string();
    assert!(
        msg.contains("acme/absent")
            && msg.contains("HF_HUB_OFFLINE")
            && msg.contains("huggingface-cli download"),
        "{msg}"
    );
    assert!(
        msg.contains(&home.path().join("hub").display().to_string()),
        "{msg}"
    );
}
