//! Output to S3 (and S3-compatible servers), Google Cloud Storage or Azure Blob Storage through
//! the `object_store` crate.
//!
//! Credentials and endpoints come from the environment, with the names the clouds' own tools
//! use (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...). The crate is
//! async; one small tokio runtime drives it so that the rest of the pipeline stays plain
//! threads. Shards are built in a local temporary directory and uploaded (multipart for large
//! files); an object appears only when its upload completes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tessera_core::{Error, Result, WithPath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Store;

pub struct ObjectStoreOutput {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
    staging: tempfile_dir::TempRoot,
}

/// Environment variables handed to the store's builder: the builder ignores names it does not
/// know, but passing only the cloud prefixes keeps unrelated variables out of its way.
fn cloud_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .collect()
}

impl ObjectStoreOutput {
    pub fn open(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid(format!("{url}: not a valid URL ({e})")))?;
        let (store, prefix) = object_store::parse_url_opts(&parsed, cloud_env())
            .map_err(|e| Error::invalid(format!("{url}: {}", one_line(&e))))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the I/O runtime: {e}")))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            store: Arc::from(store),
            prefix,
            runtime,
            staging: tempfile_dir::TempRoot::new()?,
        })
    }

    fn location(&self, key: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn err(&self, key: &str, e: object_store::Error) -> Error {
        Error::file(format!("{}/{key}", self.url), one_line(&e))
    }

    /// Every object key below `prefix` (recursively), relative to this store's root, sorted.
    pub fn list_recursive(&self, prefix: &str) -> Result<Vec<String>> {
        let location = self.location(prefix);
        let base = self.prefix.as_ref().len();
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&location));
            while let Some(meta) = stream.next().await {
                let p = meta.map_err(|e| self.err(prefix, e))?.location;
                let s = p.as_ref();
                out.push(s[base.min(s.len())..].trim_start_matches('/').to_string());
            }
            out.sort();
            Ok(out)
        })
    }

    fn upload_file(&self, key: &str, local: &Path) -> Result<()> {
        let location = self.location(key);
        self.runtime.block_on(async {
            let mut file = tokio::fs::File::open(local).await.with_path(local)?;
            let mut writer = BufWriter::new(self.store.clone(), location);
            let mut buf = vec![0u8; 8 << 20];
            loop {
                let n = file.read(&mut buf).await.with_path(local)?;
                if n == 0 {
                    break;
                }
                if let Err(e) = writer.write_all(&buf[..n]).await {
                    let _ = writer.abort().await;
                    return Err(Error::file(format!("{}/{key}", self.url), e));
                }
            }
            writer
                .shutdown()
                .await
                .map_err(|e| Error::file(format!("{}/{key}", self.url), e))
        })
    }
}

/// object_store errors nest their sources; one line with the innermost reason is what a user
/// can act on.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        source = s.source();
    }
    msg.replace('\n', " ")
}

impl Store for ObjectStoreOutput {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let location = self.location(key);
        self.runtime.block_on(async {
            match self.store.get(&location).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| self.err(key, e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(key, e)),
            }
        })
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let location = self.location(key);
        self.runtime.block_on(async {
            self.store
                .put(&location, PutPayload::from(bytes.to_vec()))
                .await
                .map(|_| ())
                .map_err(|e| self.err(key, e))
        })
    }

    fn put_path(&self, key: &str, local: &Path) -> Result<()> {
        if local.is_dir() {
            let mut files = Vec::new();
            collect_files(local, local, &mut files)?;
            files.sort();
            for rel in files {
                let sub = format!("{key}/{}", rel.to_string_lossy().replace('\\', "/"));
                self.upload_file(&sub, &local.join(&rel))?;
            }
            std::fs::remove_dir_all(local).with_path(local)
        } else {
            self.upload_file(key, local)?;
            std::fs::remove_file(local).with_path(local)
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let location = self.location(prefix);
        let base = self.prefix.as_ref().len();
        let strip = |p: &ObjectPath| -> String {
            let s = p.as_ref();
            s[base.min(s.len())..].trim_start_matches('/').to_string()
        };
        self.runtime.block_on(async {
            let listed = self
                .store
                .list_with_delimiter(Some(&location))
                .await
                .map_err(|e| self.err(prefix, e))?;
            let mut out: Vec<String> = listed
                .common_prefixes
                .iter()
                .map(strip)
                .chain(listed.objects.iter().map(|o| strip(&o.location)))
                .collect();
            out.sort();
            Ok(out)
        })
    }

    fn remove(&self, key: &str) -> Result<()> {
        let location = self.location(key);
        self.runtime.block_on(async {
            // A key may name one object or a "directory" of them (npy shards).
            let mut below: Vec<ObjectPath> = Vec::new();
            let mut stream = self.store.list(Some(&location));
            while let Some(meta) = stream.next().await {
                below.push(meta.map_err(|e| self.err(key, e))?.location);
            }
            below.push(location);
            for p in below {
                match self.store.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(key, e)),
                }
            }
            Ok(())
        })
    }

    fn staging_dir(&self) -> Result<PathBuf> {
        self.staging.fresh()
    }

    fn clear_staging(&self) -> Result<()> {
        // Staging is a private local directory per process, removed when the store drops;
        // uploads that a kill interrupted never became objects.
        Ok(())
    }

    fn fetch_to(&self, key: &str, dest: &Path) -> Result<()> {
        let location = self.location(key);
        self.runtime.block_on(async {
            let got = self
                .store
                .get(&location)
                .await
                .map_err(|e| self.err(key, e))?;
            let mut file = tokio::fs::File::create(dest).await.with_path(dest)?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err(key, e))?;
                file.write_all(&chunk).await.with_path(dest)?;
            }
            file.flush().await.with_path(dest)
        })
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_path(dir)? {
        let path = entry.with_path(dir)?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// A private local directory for building shards before upload, removed on drop.
mod tempfile_dir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tessera_core::{Result, WithPath};

    pub struct TempRoot {
        dir: PathBuf,
        next: AtomicU64,
    }

    impl TempRoot {
        pub fn new() -> Result<Self> {
            // One per store: input buckets and the output each remove theirs on drop.
            static STORES: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tessera-upload-{}-{}",
                std::process::id(),
                STORES.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).with_path(&dir)?;
            Ok(Self {
                dir,
                next: AtomicU64::new(0),
            })
        }

        pub fn fresh(&self) -> Result<PathBuf> {
            let d = self
                .dir
                .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
            std::fs::create_dir_all(&d).with_path(&d)?;
            Ok(d)
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
