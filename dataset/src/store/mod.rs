//! Where a dataset's output goes: a local directory or an object store bucket.
//!
//! Keys are `/`-separated paths below the output root (`shards/data-00000-of-00008.tar`,
//! `done/00000.json`). Every write is all-or-nothing: a local file is written under a temporary
//! name and renamed; an object store makes an object visible only when its upload completes.
//! Together with the done marker written last, a reader never sees a partial shard.

use std::path::{Path, PathBuf};

use tessera_core::{Error, Result};

mod local;
mod object;

pub use local::LocalStore;
pub use object::ObjectStoreOutput;

/// An output location.
pub trait Store: Send + Sync {
    /// The location as the user wrote it (for messages).
    fn describe(&self) -> String;

    /// The bytes of `key`, or `None` when it does not exist.
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Write `bytes` to `key`, replacing it, atomically.
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()>;

    /// Move the local file or directory `local` (from [`Store::staging_dir`]) to `key`; a
    /// directory becomes `key/...` for each file below it.
    fn put_path(&self, key: &str, local: &Path) -> Result<()>;

    /// Keys below `prefix` (a directory-like prefix ending in `/`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Remove `key` (a file, or everything below `key/`) if it exists.
    fn remove(&self, key: &str) -> Result<()>;

    /// A fresh local directory to build files in before [`Store::put_path`]; on the same file
    /// system as the output when the output is local, so that moving is a rename.
    fn staging_dir(&self) -> Result<PathBuf>;

    /// Copy `key` to the local file `dest` (for merging shards), streaming.
    fn fetch_to(&self, key: &str, dest: &Path) -> Result<()>;

    /// Where `key` lies on the local file system, when the store is a directory: readers can
    /// then use it in place instead of copying it with [`Store::fetch_to`].
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }

    /// Remove what killed workers left in the staging area. Only safe when no other worker
    /// is running on this output (a process that made every shard, or `merge`).
    fn clear_staging(&self) -> Result<()>;
}

/// Open `--out`: `s3://`, `gs://`, `az://` (and `abfs://`, `azure://`) URLs go to the object
/// store, `file://` URLs and plain paths to the local file system.
pub fn open(out: &str) -> Result<Box<dyn Store>> {
    if let Some(path) = out.strip_prefix("file://") {
        return Ok(Box::new(LocalStore::create(Path::new(path))?));
    }
    if let Some((scheme, _)) = out.split_once("://") {
        return match scheme {
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" => {
                Ok(Box::new(ObjectStoreOutput::open(out)?))
            }
            other => Err(Error::invalid(format!(
                "{out}: unsupported URL scheme '{other}://' (use a path, file://, s3://, gs:// or az://)"
            ))),
        };
    }
    Ok(Box::new(LocalStore::create(Path::new(out))?))
}

/// Remove a directory from [`Store::staging_dir`]. The staging area itself stays: another
/// worker may be creating its own directory there at this moment ([`Store::clear_staging`]
/// removes it when that cannot happen).
pub fn discard_staging(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether an input argument names an object in an object store rather than a local path.
pub fn is_url(arg: &str) -> bool {
    arg.split_once("://")
        .is_some_and(|(scheme, _)| scheme.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_locations() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("out");
        assert_eq!(
            open(&plain.display().to_string()).unwrap().describe(),
            plain.display().to_string()
        );
        let url = format!("file://{}", dir.path().join("out2").display());
        assert!(open(&url).is_ok());
        let e = open("ftp://host/x").err().unwrap().to_string();
        assert!(e.contains("unsupported URL scheme 'ftp://'"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = open(&file.display().to_string()).err().unwrap().to_string();
        assert!(e.contains("not a directory"), "{e}");
        assert!(is_url("s3://b/k") && is_url("gs://b") && !is_url("dir/file.wav"));
    }

    #[test]
    fn local_keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(dir.path()).unwrap();
        for bad in ["../x", "a//b", "/abs", "a/./b"] {
            assert!(store.put_bytes(bad, b"x").is_err(), "{bad}");
        }
        store.put_bytes("a/b.json", b"{}").unwrap();
        assert_eq!(store.read("a/b.json").unwrap().as_deref(), Some(&b"{}"[..]));
        assert_eq!(store.read("a/missing").unwrap(), None);
        assert_eq!(store.list("a/").unwrap(), vec!["a/b.json".to_string()]);
        store.remove("a").unwrap();
        assert_eq!(store.read("a/b.json").unwrap(), None);
    }
}
