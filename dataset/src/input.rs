//! Turning the command line's INPUT arguments into a sorted, de-duplicated list of [`Item`]s.
//!
//! An argument is one of:
//! - an audio file;
//! - a directory, searched recursively for files with an audio extension ([`AUDIO_EXTENSIONS`]);
//! - `@list.txt`: one path per line (blank lines and `#` comments skipped), relative paths taken
//!   from the list's directory;
//! - a JSONL manifest (`.jsonl` / `.json` lines): one object per line with `audio_filepath`
//!   (NeMo) or `path`, and optionally `id`, `text`, `duration`.
//!
//! The list is sorted by source and split into shards by position, so every process that sees
//! the same inputs makes the same shards. Item ids are derived from the relative path (the
//! extension dropped, dots replaced) unless a manifest gives one; clashing ids get a `_2`, `_3`
//! suffix in sorted order, so they stay deterministic too.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use tessera_core::{Error, Result, WithPath};

use crate::item::Item;
use crate::remote::Buckets;

/// Extensions (lower case) that directory discovery treats as audio. Opus is listed although
/// it cannot be decoded yet, so that such files show up as recorded failures instead of being
/// silently left out.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "mp4", "caf", "aif", "aiff",
    "aifc", "mka", "mkv", "webm",
];

/// Manifest lines larger than this are refused (a corrupt file, not a manifest).
const MAX_MANIFEST_LINE: usize = 1 << 20;

/// Every item named by `args`, sorted by source, ids unique. Object-store URLs are listed
/// through `buckets`.
pub fn discover_with(args: &[String], buckets: &Buckets) -> Result<Vec<Item>> {
    if args.is_empty() {
        return Err(Error::invalid("no inputs given"));
    }
    let mut items = Vec::new();
    for arg in args {
        if crate::store::is_url(arg) && !arg.starts_with("file://") {
            items.extend(buckets.discover(arg)?);
            continue;
        }
        let arg = arg.strip_prefix("file://").unwrap_or(arg);
        if let Some(list) = arg.strip_prefix('@') {
            items.extend(read_list(Path::new(list))?);
            continue;
        }
        let path = Path::new(arg);
        let meta = fs::metadata(path).with_path(path)?;
        if meta.is_dir() {
            items.extend(walk(path)?);
        } else if is_manifest(path) {
            items.extend(read_manifest(path)?);
        } else {
            items.push(file_item(path, file_name(path)));
        }
    }
    items.sort_by(|a, b| a.source.cmp(&b.source));
    items.dedup_by(|a, b| a.source == b.source);
    unique_ids(&mut items);
    Ok(items)
}

/// [`discover_with`] for local inputs (URLs open their buckets on the way).
pub fn discover(args: &[String]) -> Result<Vec<Item>> {
    discover_with(args, &Buckets::default())
}

fn is_manifest(path: &Path) -> bool {
    matches!(extension(path).as_deref(), Some("jsonl") | Some("json"))
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

fn file_name(path: &Path) -> PathBuf {
    path.file_name().map(PathBuf::from).unwrap_or_default()
}

fn file_item(path: &Path, rel_path: PathBuf) -> Item {
    Item {
        id: id_from(&rel_path),
        source: path.display().to_string(),
        rel_path,
        text: None,
        duration: None,
    }
}

/// Audio files under `dir`; their relative paths start with the directory's own name, so that
/// two input directories with the same layout do not collide.
fn walk(dir: &Path) -> Result<Vec<Item>> {
    let base = dir
        .canonicalize()
        .with_path(dir)?
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_path(&d)? {
            let entry = entry.with_path(&d)?;
            let path = entry.path();
            let kind = entry.file_type().with_path(&path)?;
            // Symlinked directories are not followed: a loop would never end.
            if kind.is_dir() {
                stack.push(path);
            } else if extension(&path).is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.as_str())) {
                let rel = base.join(path.strip_prefix(dir).unwrap_or(&path));
                out.push(file_item(&path, rel));
            }
        }
    }
    Ok(out)
}

/// Resolve a path written in a list or manifest: relative ones are relative to that file.
fn resolve(list: &Path, written: &str) -> PathBuf {
    let p = Path::new(written);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        list.parent().unwrap_or(Path::new("")).join(p)
    }
}

/// The tree position of a path written in a list: its normal components (no root, `.`, `..`).
fn tree_path(written: &str) -> PathBuf {
    Path::new(written)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn read_lines(path: &Path) -> Result<String> {
    let text = fs::read(path).with_path(path)?;
    String::from_utf8(text).map_err(|_| Error::file(path, "not UTF-8 text"))
}

fn read_list(list: &Path) -> Result<Vec<Item>> {
    let text = read_lines(list)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(file_item(&resolve(list, line), tree_path(line)));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ManifestLine {
    audio_filepath: Option<String>,
    path: Option<String>,
    id: Option<serde_json::Value>,
    text: Option<String>,
    duration: Option<f64>,
}

fn read_manifest(manifest: &Path) -> Result<Vec<Item>> {
    let text = read_lines(manifest)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |reason: String| Error::file(manifest, format!("line {}: {reason}", n + 1));
        if line.len() > MAX_MANIFEST_LINE {
            return Err(at("longer than 1 MiB".into()));
        }
        let entry: ManifestLine =
            serde_json::from_str(line).map_err(|e| at(format!("not a JSON object ({e})")))?;
        let written = entry
            .audio_filepath
            .or(entry.path)
            .ok_or_else(|| at("has neither `audio_filepath` nor `path`".into()))?;
        let mut item = file_item(&resolve(manifest, &written), tree_path(&written));
        if let Some(id) = entry.id {
            let id = match id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            item.id = sanitize(&id);
        }
        item.text = entry.text;
        item.duration = entry.duration.filter(|d| d.is_finite() && *d >= 0.0);
        out.push(item);
    }
    Ok(out)
}

/// An id from a relative path: the extension dropped, separators kept as `/`, and characters
/// that WebDataset or file systems treat specially replaced by `_`.
pub(crate) fn id_from(rel_path: &Path) -> String {
    let stem = rel_path.with_extension("");
    let parts: Vec<String> = stem
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(sanitize(&s.to_string_lossy())),
            _ => None,
        })
        .collect();
    let id = parts.join("/");
    if id.is_empty() { "item".into() } else { id }
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c == '.' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let out = out.trim_matches('/').to_string();
    if out.is_empty() { "item".into() } else { out }
}

fn unique_ids(items: &mut [Item]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let taken: BTreeMap<String, ()> = items.iter().map(|i| (i.id.clone(), ())).collect();
    for item in items.iter_mut() {
        let n = seen.entry(item.id.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            let mut k = *n;
            while taken.contains_key(&format!("{}_{k}", item.id)) {
                k += 1;
            }
            item.id = format!("{}_{k}", item.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn directories_lists_and_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("corpus");
        touch(&root.join("b/two.flac"));
        touch(&root.join("a/one.v1.wav"));
        touch(&root.join("notes.txt"));
        fs::write(
            dir.path().join("list.txt"),
            "# comment\n\nextra/three.mp3\n",
        )
        .unwrap();
        touch(&dir.path().join("extra/three.mp3"));
        fs::write(
            dir.path().join("m.jsonl"),
            "{\"audio_filepath\": \"extra/four.wav\", \"text\": \"hi\", \"duration\": 1.5}\n\
             {\"path\": \"/abs/five.wav\", \"id\": 7}\n",
        )
        .unwrap();
        let args = vec![
            root.display().to_string(),
            format!("@{}", dir.path().join("list.txt").display()),
            dir.path().join("m.jsonl").display().to_string(),
        ];
        let items = discover(&args).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(items.len(), 5);
        assert!(ids.contains(&"corpus/a/one_v1"), "{ids:?}");
        assert!(ids.contains(&"corpus/b/two"));
        assert!(ids.contains(&"extra/three"));
        assert!(ids.contains(&"extra/four"));
        assert!(ids.contains(&"7"));
        let four = items.iter().find(|i| i.id == "extra/four").unwrap();
        assert_eq!(four.text.as_deref(), Some("hi"));
        assert_eq!(four.duration, Some(1.5));
        assert!(four.source.ends_with("extra/four.wav"));
        let five = items.iter().find(|i| i.id == "7").unwrap();
        assert_eq!(five.source, "/abs/five.wav");
        assert_eq!(five.rel_path, PathBuf::from("abs/five.wav"));
        let mut sorted = items.clone();
        sorted.sort_by(|a, b| a.source.cmp(&b.source));
        assert_eq!(items, sorted);
    }

    #[test]
    fn clashing_ids_get_suffixes_and_duplicates_collapse() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("x/a.wav"));
        touch(&dir.path().join("x/a.flac"));
        let a = dir.path().join("x/a.wav").display().to_string();
        let items = discover(&[dir.path().join("x").display().to_string(), a]).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, vec!["x/a", "x/a_2"]);
    }

    #[test]
    fn bad_arguments_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.wav").display().to_string();
        let e = discover(&[missing]).unwrap_err().to_string();
        assert!(e.contains("nope.wav"), "{e}");
        let m = dir.path().join("bad.jsonl");
        fs::write(&m, "{\"text\": \"no path\"}\n").unwrap();
        let e = discover(&[m.display().to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.jsonl") && e.contains("line 1"), "{e}");
        fs::write(&m, "not json\n").unwrap();
        let e = discover(&[m.display().to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a JSON object"), "{e}");
        assert!(discover(&[]).is_err());
    }
}
