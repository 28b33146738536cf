//! Output in a local directory (or a shared file system: NFS, Lustre, a mounted bucket).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_core::{Error, Result, WithPath};

use super::Store;

/// Staging lives inside the output root so that moving a finished shard into place is a
/// rename on one file system, which is atomic.
const STAGING: &str = ".staging";

pub struct LocalStore {
    root: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread uses: host-unique pid plus a counter.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl LocalStore {
    /// Use `root`, creating it if needed.
    pub fn create(root: &Path) -> Result<Self> {
        if root.exists() && !root.is_dir() {
            return Err(Error::file(root, "exists and is not a directory"));
        }
        fs::create_dir_all(root).with_path(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(Error::invalid(format!("bad output key '{key}'")));
        }
        Ok(self.root.join(key))
    }

    fn make_parent(path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_path(parent)?;
        }
        Ok(())
    }
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::file(&path, e)),
        }
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        Self::make_parent(&path)?;
        // Written inside the staging area, so that a kill between write and rename leaves
        // nothing among the outputs.
        let staging = self.root.join(STAGING);
        fs::create_dir_all(&staging).with_path(&staging)?;
        let tmp = staging.join(unique("file"));
        fs::write(&tmp, bytes).with_path(&tmp)?;
        fs::rename(&tmp, &path).with_path(&path)
    }

    fn put_path(&self, key: &str, local: &Path) -> Result<()> {
        let path = self.path(key)?;
        Self::make_parent(&path)?;
        // A directory cannot be renamed over a non-empty one: an earlier, interrupted run of
        // the same shard may have left one (it never got its done marker).
        if local.is_dir() && path.is_dir() {
            fs::remove_dir_all(&path).with_path(&path)?;
        }
        fs::rename(local, &path).with_path(&path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::file(&dir, e)),
        };
        for entry in entries {
            let entry = entry.with_path(&dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                out.push(format!("{}/{name}", prefix.trim_end_matches('/')));
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let r = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::file(&path, e)),
        }
    }

    fn staging_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join(STAGING).join(unique("shard"));
        fs::create_dir_all(&dir).with_path(&dir)?;
        Ok(dir)
    }

    fn fetch_to(&self, key: &str, dest: &Path) -> Result<()> {
        let path = self.path(key)?;
        fs::copy(&path, dest).with_path(&path)?;
        Ok(())
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn clear_staging(&self) -> Result<()> {
        let staging = self.root.join(STAGING);
        match fs::remove_dir_all(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::file(&staging, e)),
            _ => Ok(()),
        }
    }
}
