//! A small generated corpus and helpers shared by the dataset tests (and the CLI's dataset
//! tests, which include this file by path).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tessera_codec::audio::{AudioBuffer, WavFormat, write_wav};

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The tiny SNAC checkpoint of the reference fixtures (24 kHz, mono).
pub fn snac_dir() -> PathBuf {
    repo("codec/tests/fixtures/snac/tiny_24k")
}

/// A cheap deterministic generator (no rand dependency needed for test audio).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `n_good` WAV files of different lengths, rates and channel counts under `dir/corpus/`
/// (two sub-directories), plus bad ones: empty, not audio, and too short. Returns the paths
/// of the bad ones.
pub fn write_corpus(dir: &Path, n_good: usize) -> Vec<PathBuf> {
    let rates = [16_000u32, 22_050, 24_000, 44_100];
    let mut rng = Lcg(7);
    for i in 0..n_good {
        let rate = rates[i % rates.len()];
        let seconds = 0.3 + 0.17 * (i % 9) as f64;
        let n = (seconds * rate as f64) as usize;
        let channels = if i % 3 == 0 { 2 } else { 1 };
        let freq = 110.0 + 37.0 * i as f32;
        let data: Vec<Vec<f32>> = (0..channels)
            .map(|c| {
                (0..n)
                    .map(|t| {
                        let phase = 2.0 * std::f32::consts::PI * freq * t as f32 / rate as f32;
                        0.4 * (phase + c as f32).sin() + 0.05 * rng.next()
                    })
                    .collect()
            })
            .collect();
        let sub = if i % 2 == 0 { "a" } else { "b" };
        let path = dir.join(format!("corpus/{sub}/clip{i:03}.wav"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_wav(
            &path,
            &AudioBuffer::new(rate, data).unwrap(),
            WavFormat::F32,
        )
        .unwrap();
    }
    let bad_dir = dir.join("corpus/bad");
    fs::create_dir_all(&bad_dir).unwrap();
    let empty = bad_dir.join("empty.wav");
    fs::write(&empty, b"").unwrap();
    let text = bad_dir.join("text.flac");
    fs::write(&text, b"this is not audio at all").unwrap();
    let short = bad_dir.join("short.wav");
    write_wav(
        &short,
        &AudioBuffer::mono(24_000, vec![0.1; 12]).unwrap(),
        WavFormat::F32,
    )
    .unwrap();
    vec![empty, text, short]
}

/// Every file below `root` and its bytes, by relative path.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Compare two output trees file by file, naming the first difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let ka: Vec<&String> = ta.keys().collect();
    let kb: Vec<&String> = tb.keys().collect();
    assert_eq!(
        ka,
        kb,
        "different files in {} and {}",
        a.display(),
        b.display()
    );
    for (k, v) in &ta {
        assert!(
            v == &tb[k],
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}
