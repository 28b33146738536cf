//! `tessera dataset tokenize|status|merge` through the real binary: exit statuses and
//! summaries, SIGKILL at random moments followed by a re-run, worker processes in parallel,
//! and object storage on a real S3 server (s3s-fs) started for the test.

#[path = "../../dataset/tests/support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_same_tree, snac_dir, write_corpus};

fn tessera() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("tessera-test-empty-hf-home"),
        )
        // The scheduler variables of the machine running the tests must not pick shards.
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE");
    c
}

fn tokenize(corpus: &Path, out: &str, extra: &[&str]) -> Command {
    let mut c = tessera();
    c.args(["-q", "dataset", "tokenize"])
        .arg(corpus)
        .arg("--codec")
        .arg(snac_dir())
        .args(["--out", out])
        .args(extra);
    c
}

fn ok(mut c: Command) -> Output {
    let o = c.output().expect("run tessera");
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(3),
        "tessera failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> Value {
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("one JSON object")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn tokenize_status_and_merge_report_failures() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path(), 6);
    let corpus = dir.path().join("corpus");
    let out = dir.path().join("out");
    let mut c = tokenize(&corpus, &s(&out), &["--num-shards", "2", "--json"]);
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("3 of 9 items failed"), "{stderr}");
    let summary = json(&o);
    assert_eq!(summary["encoded"], 6);
    assert_eq!(summary["failed"], 3);
    assert_eq!(summary["shards_done"], 2);

    let mut st = tessera();
    st.args(["dataset", "status", "--json"]).arg(&out);
    let status = json(&ok(st));
    assert_eq!(status["done"], serde_json::json!([0, 1]));
    assert_eq!(status["failures"].as_array().unwrap().len(), 3);

    let mut m = tessera();
    m.args(["-q", "dataset", "merge", "--json"]).arg(&out);
    let merged = json(&ok(m));
    assert_eq!(merged["encoded"], 6);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tokenizer"]["id"], "tiny_24k");
    assert_eq!(manifest["shards"].as_array().unwrap().len(), 2);

    // Running again skips both shards and changes nothing.
    let before = support::tree(&out);
    let again = json(&ok(tokenize(
        &corpus,
        &s(&out),
        &["--num-shards", "2", "--json"],
    )));
    assert_eq!(again["shards_skipped"], 2);
    assert_eq!(before, support::tree(&out));

    // Usage errors: a bad shard index, and a missing output for status.
    let mut bad = tokenize(
        &corpus,
        &s(&out),
        &["--num-shards", "2", "--shard-index", "2"],
    );
    let o = bad.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("out of range"));
    let mut st = tessera();
    st.args(["dataset", "status"])
        .arg(dir.path().join("nothing"));
    let o = st.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("plan.json"));
}

/// Small, deterministic "random" numbers for kill times.
fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn sigkill_at_random_moments_then_rerun_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path(), 40);
    let corpus = dir.path().join("corpus");
    let args = ["--num-shards", "8", "--jobs", "1", "--format", "parquet"];
    let clean = dir.path().join("clean");
    let t0 = Instant::now();
    ok(tokenize(&corpus, &s(&clean), &args));
    let first = t0.elapsed();
    // A second, warm run times the job too: the first one also pays for cold caches, and kill
    // times taken from it alone would land after the end too often.
    let t1 = Instant::now();
    ok(tokenize(&corpus, &s(&dir.path().join("warm")), &args));
    let full = first.min(t1.elapsed());

    let mut seed = 42u64;
    let mut interrupted_mid_job = 0;
    for trial in 0..4 {
        let out = dir.path().join(format!("killed{trial}"));
        // Kill up to three times at random moments, then let a run finish. A rerun only does
        // the shards not yet done, so its kill time is drawn over what is left.
        let mut left = 1.0;
        for _ in 0..3 {
            let mut child: Child = tokenize(&corpus, &s(&out), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let wait = full.mul_f64(left * lcg(&mut seed));
            std::thread::sleep(wait);
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
            let done = std::fs::read_dir(out.join("done")).map_or(0, |d| d.count());
            if (1..8).contains(&done) {
                interrupted_mid_job += 1;
            }
            left = (8 - done.min(8)) as f64 / 8.0;
        }
        ok(tokenize(&corpus, &s(&out), &args));
        assert_same_tree(&clean, &out);
    }
    eprintln!("{interrupted_mid_job} of 12 kills left a partly done job");
    // Kills before the first or after the last shard prove little; most must land inside.
    assert!(
        interrupted_mid_job >= 3,
        "only {interrupted_mid_job} kills landed mid-job"
    );
}

#[test]
fn worker_processes_in_parallel_then_merge_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path(), 12);
    let corpus = dir.path().join("corpus");
    let one = dir.path().join("one");
    ok(tokenize(
        &corpus,
        &s(&one),
        &["--num-shards", "4", "--format", "megatron"],
    ));
    let many = dir.path().join("many");
    // Four workers at once, told their shard the ways schedulers tell them.
    let envs: [(&str, &str, &str, &str); 4] = [
        ("SLURM_ARRAY_TASK_ID", "0", "SLURM_ARRAY_TASK_COUNT", "4"),
        ("JOB_COMPLETION_INDEX", "1", "", ""),
        ("RANK", "2", "WORLD_SIZE", "4"),
        ("", "", "", ""),
    ];
    let children: Vec<Child> = envs
        .iter()
        .enumerate()
        .map(|(k, (ik, iv, ck, cv))| {
            let extra: Vec<String> = match k {
                1 => vec!["--num-shards".into(), "4".into()],
                3 => vec![
                    "--num-shards".into(),
                    "4".into(),
                    "--shard-index".into(),
                    "3".into(),
                ],
                _ => vec![],
            };
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let mut args = vec!["--format", "megatron"];
            args.extend(extra);
            let mut c = tokenize(&corpus, &s(&many), &args);
            if !ik.is_empty() {
                c.env(ik, iv);
            }
            if !ck.is_empty() {
                c.env(ck, cv);
            }
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for out in [&one, &many] {
        let mut m = tessera();
        m.args(["-q", "dataset", "merge"]).arg(out);
        ok(m);
    }
    assert_same_tree(&one, &many);
}

/// An s3s-fs server (a file-system-backed S3 implementation) on a free local port.
struct S3Server {
    child: Child,
    root: PathBuf,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TESSERA_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    })
}

fn start_s3(root: &Path) -> Option<S3Server> {
    let Some(bin) = s3s_fs() else {
        assert!(
            std::env::var_os("TESSERA_REQUIRE_S3").is_none(),
            "TESSERA_REQUIRE_S3 is set but no s3s-fs binary was found (PATH or TESSERA_S3S_FS)"
        );
        eprintln!("skipping: no s3s-fs binary (cargo install s3s-fs --features binary)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(root.join("bucket")).unwrap();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "tessera", "--secret-key", "tessera-secret"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(S3Server {
        child,
        root: root.to_path_buf(),
        endpoint: format!("http://127.0.0.1:{port}"),
    })
}

fn with_s3(mut c: Command, server: &S3Server) -> Command {
    c.env("AWS_ACCESS_KEY_ID", "tessera")
        .env("AWS_SECRET_ACCESS_KEY", "tessera-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", &server.endpoint)
        .env("AWS_ALLOW_HTTP", "true");
    c
}

#[test]
fn object_store_output_and_inputs_on_a_real_s3_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = start_s3(&dir.path().join("s3")) else {
        return;
    };
    write_corpus(dir.path(), 6);
    let corpus = dir.path().join("corpus");
    let args = ["--num-shards", "3", "--format", "megatron"];

    // Output to the bucket: the same bytes as local output, merge included.
    let local = dir.path().join("local");
    ok(tokenize(&corpus, &s(&local), &args));
    let mut m = tessera();
    m.args(["-q", "dataset", "merge"]).arg(&local);
    ok(m);
    ok(with_s3(
        tokenize(&corpus, "s3://bucket/run", &args),
        &server,
    ));
    let mut st = with_s3(tessera(), &server);
    st.args(["dataset", "status", "--json", "s3://bucket/run"]);
    assert_eq!(json(&ok(st))["done"], serde_json::json!([0, 1, 2]));
    let mut m = with_s3(tessera(), &server);
    m.args(["-q", "dataset", "merge", "s3://bucket/run"]);
    ok(m);
    assert_same_tree(&local, &server.root.join("bucket/run"));

    // Inputs from the bucket: the codes are those of the local files.
    let copy = server.root.join("bucket/corpus");
    for (rel, bytes) in support::tree(&corpus) {
        let p = copy.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let npy_local = dir.path().join("npy-local");
    let npy_remote = dir.path().join("npy-remote");
    ok(tokenize(&corpus, &s(&npy_local), &["--format", "npy"]));
    let mut c = with_s3(tessera(), &server);
    c.args([
        "-q",
        "dataset",
        "tokenize",
        "s3://bucket/corpus/",
        "--format",
        "npy",
    ])
    .arg("--codec")
    .arg(snac_dir())
    .arg("--out")
    .arg(&npy_remote);
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(&npy_local.join("shards"), &npy_remote.join("shards"));
    let errors = std::fs::read_to_string(npy_remote.join("errors/00000.jsonl")).unwrap();
    assert!(
        errors.contains("s3://bucket/corpus/bad/empty.wav"),
        "{errors}"
    );

    // Wrong credentials: one clear error, exit 1.
    let mut bad = with_s3(tokenize(&corpus, "s3://bucket/denied", &args), &server);
    bad.env("AWS_SECRET_ACCESS_KEY", "wrong");
    let o = bad.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: s3://bucket/denied/"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
