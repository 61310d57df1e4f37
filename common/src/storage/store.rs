//! Opening a storage location from a URL and the configuration, and the checkpoint operations
//! on it: write `_metadata` create-only, find the newest checkpoint whose metadata is intact,
//! and discard a checkpoint's files.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::config::options::{S3_ACCESS_KEY, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_KEY};
use crate::config::Configuration;
use crate::proto::checkpoint::CheckpointMetadata;

use super::layout::{checkpoint_id_of, CheckpointLayout};
use super::metadata::{decode_metadata, encode_metadata};

/// A store and the prefix inside it that a URL names.
#[derive(Clone, Debug)]
pub struct StorageLocation {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    pub url: String,
    /// For file:// locations, the directory the store is rooted at (directories outlive their
    /// files there, unlike prefixes in an object store).
    local_root: Option<std::path::PathBuf>,
}

fn config_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `file:///abs/dir`, `s3://bucket/prefix` or `memory://prefix` → a location. S3 uses Flink's
/// keys: `s3.endpoint`, `s3.access-key`, `s3.secret-key`, `s3.path.style.access`, `s3.region`.
pub fn open_location(url: &str, config: &Configuration) -> Result<StorageLocation, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a storage URL; expected file:///path or s3://bucket/prefix"))?;
    let mut local_root = None;
    let (store, prefix): (Arc<dyn ObjectStore>, String) = match scheme {
        "file" => {
            if !rest.starts_with('/') {
                return Err(format!("'{url}' is not an absolute file:// URL (file:///path)"));
            }
            std::fs::create_dir_all(rest).map_err(|e| format!("cannot create {rest}: {e}"))?;
            let fs = LocalFileSystem::new_with_prefix(rest).map_err(|e| format!("{url}: {e}"))?;
            local_root = Some(std::path::PathBuf::from(rest));
            (Arc::new(fs), String::new())
        }
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("'{url}' names no bucket; expected s3://bucket/prefix"));
            }
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(config.get(&S3_REGION).map_err(config_error)?)
                .with_virtual_hosted_style_request(!config.get(&S3_PATH_STYLE_ACCESS).map_err(config_error)?);
            if let Some(endpoint) = config.get_opt(&S3_ENDPOINT).map_err(config_error)? {
                b = b
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if let Some(key) = config.get_opt(&S3_ACCESS_KEY).map_err(config_error)? {
                b = b.with_access_key_id(key);
            }
            if let Some(secret) = config.get_opt(&S3_SECRET_KEY).map_err(config_error)? {
                b = b.with_secret_access_key(secret);
            }
            let s3 = b.build().map_err(|e| format!("{url}: {e}"))?;
            (Arc::new(s3), prefix.to_string())
        }
        "memory" => (Arc::new(InMemory::new()), rest.to_string()),
        other => {
            return Err(format!(
                "unsupported storage scheme '{other}' in '{url}'; expected file:// or s3://"
            ))
        }
    };
    Ok(StorageLocation {
        store,
        prefix: Path::from(prefix),
        url: url.to_string(),
        local_root,
    })
}

/// An object written create-only (`If-None-Match: *` on S3): `_metadata` completes a snapshot
/// directory once, whoever races for it; a leader lease is taken by one contender.
async fn put_once(store: &dyn ObjectStore, path: &Path, data: Bytes) -> object_store::Result<()> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(path, PutPayload::from_bytes(data), opts)
        .await
        .map(|_| ())
}

impl StorageLocation {
    /// `name` (slash-separated) inside this location.
    pub fn path(&self, name: &str) -> Path {
        name.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// On file://, where `path` lies on the local file system.
    fn local_file(&self, path: &Path) -> Option<std::path::PathBuf> {
        self.local_root.as_ref().map(|root| root.join(path.as_ref()))
    }

    /// Writes a file; overwriting is allowed.
    pub async fn put_path(&self, path: &Path, data: Bytes) -> Result<(), String> {
        self.store
            .put(path, PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(|e| format!("writing {path} in {}: {e}", self.url))
    }

    /// Writes a file only if it does not exist yet: `false` when another writer got there first.
    pub async fn create_path(&self, path: &Path, data: Bytes) -> Result<bool, String> {
        match put_once(self.store.as_ref(), path, data).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(format!("creating {path} in {}: {e}", self.url)),
        }
    }

    /// Deletes a file; a missing one is not an error.
    pub async fn delete_path(&self, path: &Path) -> Result<(), String> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("deleting {path} in {}: {e}", self.url)),
        }
    }

    pub async fn get_path(&self, path: &Path) -> Result<Bytes, String> {
        let r = self
            .store
            .get(path)
            .await
            .map_err(|e| format!("reading {path} in {}: {e}", self.url))?;
        r.bytes()
            .await
            .map_err(|e| format!("reading {path} in {}: {e}", self.url))
    }

    pub async fn put(&self, name: &str, data: Bytes) -> Result<(), String> {
        self.put_path(&self.path(name), data).await
    }

    /// Copies file `name` to the local file `to` (created or replaced) and returns its size.
    /// On file:// the kernel copies it (`copy_file_range`, a reflink where the file system
    /// shares extents); elsewhere the body is written as it arrives, never held whole.
    pub async fn get_into(&self, name: &str, to: &std::path::Path) -> Result<u64, String> {
        let path = self.path(name);
        if let Some(from) = self.local_file(&path) {
            return tokio::fs::copy(&from, to)
                .await
                .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()));
        }
        let read_err = |e: object_store::Error| format!("reading {path} in {}: {e}", self.url);
        let write_err = |e: std::io::Error| format!("writing {}: {e}", to.display());
        let mut body = self.store.get(&path).await.map_err(read_err)?.into_stream();
        let mut file = tokio::fs::File::create(to).await.map_err(write_err)?;
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(read_err)? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(write_err)?;
            size += chunk.len() as u64;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(write_err)?;
        Ok(size)
    }

    /// Every object under `dir`, at any depth.
    pub async fn list_path(&self, dir: &Path) -> Result<Vec<ObjectMeta>, String> {
        self.store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| format!("listing {dir} in {}: {e}", self.url))
    }

    pub async fn get(&self, name: &str) -> Result<Bytes, String> {
        self.get_path(&self.path(name)).await
    }

    /// Bytes `range` of file `name` (a ranged GET on S3).
    pub async fn get_range(&self, name: &str, range: std::ops::Range<u64>) -> Result<Bytes, String> {
        let path = self.path(name);
        self.store.get_range(&path, range.clone()).await.map_err(|e| {
            format!(
                "reading bytes {}..{} of {path} in {}: {e}",
                range.start, range.end, self.url
            )
        })
    }

    /// Completes the snapshot directory this location names: its `_metadata`, create-only.
    pub async fn write_metadata(&self, m: &CheckpointMetadata) -> Result<(), String> {
        put_once(self.store.as_ref(), &self.path("_metadata"), encode_metadata(m))
            .await
            .map_err(|e| format!("writing {}/_metadata: {e}", self.url))
    }

    /// Deletes every object under `dir`, and on a local file system the emptied directories.
    pub async fn delete_tree(&self, dir: &Path) -> Result<(), String> {
        for f in self.list_path(dir).await? {
            self.store
                .delete(&f.location)
                .await
                .map_err(|e| format!("deleting {} in {}: {e}", f.location, self.url))?;
        }
        if let Some(local) = self.local_file(dir) {
            // The emptied directories themselves, off the async workers.
            tokio::task::spawn_blocking(move || {
                if local.exists() {
                    std::fs::remove_dir_all(&local).map_err(|e| format!("deleting {}: {e}", local.display()))?;
                }
                Ok::<(), String>(())
            })
            .await
            .map_err(|e| format!("deleting {dir} in {}: {e}", self.url))??;
        }
        Ok(())
    }

    /// Deletes everything this location names (a savepoint directory being disposed).
    pub async fn delete_all(&self) -> Result<(), String> {
        self.delete_tree(&self.prefix.clone()).await
    }

    /// The `_metadata` of the snapshot directory this location names.
    pub async fn read_metadata(&self) -> Result<CheckpointMetadata, String> {
        let bytes = self.get("_metadata").await?;
        decode_metadata(&bytes).map_err(|e| format!("{}/_metadata is not usable: {e}", self.url))
    }
}

/// Checkpoints of one job in one location.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    pub location: StorageLocation,
    pub layout: CheckpointLayout,
}

impl CheckpointStore {
    pub fn new(location: StorageLocation, job_id: &str) -> Self {
        let layout = CheckpointLayout::new(&location.prefix, job_id);
        CheckpointStore { location, layout }
    }

    /// Writes a file (state of a checkpoint); overwriting is allowed.
    pub async fn put(&self, path: &Path, data: Bytes) -> Result<(), String> {
        self.location.put_path(path, data).await
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes, String> {
        self.location.get_path(path).await
    }

    /// Completes checkpoint `metadata.checkpoint_id`: `_metadata` is written create-only, so a
    /// checkpoint id can complete once, whoever races for it.
    pub async fn complete(&self, metadata: &CheckpointMetadata) -> Result<Path, String> {
        let path = self.layout.metadata(metadata.checkpoint_id);
        match put_once(self.location.store.as_ref(), &path, encode_metadata(metadata)).await {
            Ok(()) => Ok(path),
            Err(object_store::Error::AlreadyExists { .. }) => Err(format!(
                "checkpoint {} already exists at {path}",
                metadata.checkpoint_id
            )),
            Err(e) => Err(format!("writing {path}: {e}")),
        }
    }

    /// Ids of the checkpoint directories holding at least one file (complete or not), newest
    /// first. Empty directories do not count: some stores (a filesystem, SeaweedFS) keep them
    /// after their files are deleted.
    pub async fn checkpoint_ids(&self) -> Result<Vec<u64>, String> {
        let mut ids = Vec::new();
        for id in self.directory_ids().await? {
            let dir = self.layout.checkpoint_dir(id);
            let mut files = self.location.store.list(Some(&dir));
            if files
                .try_next()
                .await
                .map_err(|e| format!("listing {dir}: {e}"))?
                .is_some()
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Ids of the checkpoint directories, empty or not, newest first: one listing.
    async fn directory_ids(&self) -> Result<Vec<u64>, String> {
        let listing = self
            .location
            .store
            .list_with_delimiter(Some(self.layout.root()))
            .await
            .map_err(|e| format!("listing {}: {e}", self.layout.root()))?;
        let mut ids: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|dir| dir.filename().and_then(checkpoint_id_of))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// The newest checkpoint whose `_metadata` exists and is intact, read newest first, so a
    /// recovery costs one listing and a read or two, however many emptied directories the
    /// store keeps. Each one passed over is logged with the reason.
    pub async fn latest_complete(&self) -> Result<Option<CheckpointMetadata>, String> {
        for id in self.directory_ids().await? {
            let path = self.layout.metadata(id);
            let why = match self.get(&path).await {
                Ok(bytes) => match decode_metadata(&bytes) {
                    Ok(m) if m.checkpoint_id == id => return Ok(Some(m)),
                    Ok(m) => format!("its metadata names checkpoint {}", m.checkpoint_id),
                    Err(e) => e.to_string(),
                },
                Err(e) => e,
            };
            tracing::warn!(
                "Checkpoint {id} of {} is not usable ({why}); trying an older one.",
                self.location.url
            );
        }
        Ok(None)
    }

    /// Deletes every file of checkpoint `id` (its directory; shared files are not touched).
    pub async fn discard(&self, id: u64) -> Result<(), String> {
        self.location.delete_tree(&self.layout.checkpoint_dir(id)).await
    }

    /// Deletes a file of `shared/` (named relative to the job's directory, as state handles
    /// name it) that no retained checkpoint references any more.
    pub async fn discard_shared(&self, file: &str) -> Result<(), String> {
        let path = file.split('/').fold(self.layout.root().clone(), |p, part| p.join(part));
        self.location
            .store
            .delete(&path)
            .await
            .map_err(|e| format!("deleting {file}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(id: u64) -> CheckpointMetadata {
        CheckpointMetadata {
            job_id: "j".into(),
            checkpoint_id: id,
            timestamp_ms: 1,
            max_parallelism: 128,
            ..Default::default()
        }
    }

    async fn exercise(url: &str) {
        let location = open_location(url, &Configuration::new()).unwrap();
        let store = CheckpointStore::new(location, "job-1");
        for id in 1..=3 {
            store
                .put(&store.layout.file(id, "state-0"), Bytes::from_static(b"state"))
                .await
                .unwrap();
            store.complete(&metadata(id)).await.unwrap();
        }
        let e = store.complete(&metadata(3)).await.unwrap_err();
        assert!(e.contains("checkpoint 3 already exists"), "{e}");
        assert_eq!(store.checkpoint_ids().await.unwrap(), vec![3, 2, 1]);
        assert_eq!(store.latest_complete().await.unwrap().unwrap().checkpoint_id, 3);
        // A corrupted newest checkpoint: recovery falls back to the previous one.
        store
            .location
            .store
            .put(&store.layout.metadata(3), PutPayload::from_static(b"garbage"))
            .await
            .unwrap();
        assert_eq!(store.latest_complete().await.unwrap().unwrap().checkpoint_id, 2);
        store.discard(1).await.unwrap();
        assert_eq!(store.checkpoint_ids().await.unwrap(), vec![3, 2]);
    }

    #[tokio::test]
    async fn memory_store() {
        exercise("memory://root").await;
    }

    /// `get_into` copies a file whole into a local path, on file:// and through the object
    /// store alike, and names a missing one.
    #[tokio::test]
    async fn a_file_is_fetched_into_a_local_path() {
        let dir = tempfile::tempdir().unwrap();
        let data = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        for url in [
            "memory://root".to_string(),
            format!("file://{}/store", dir.path().display()),
        ] {
            let location = open_location(&url, &Configuration::new()).unwrap();
            location.put("shared/a.sst", data.clone()).await.unwrap();
            let to = dir.path().join("a.sst");
            assert_eq!(location.get_into("shared/a.sst", &to).await.unwrap(), data.len() as u64);
            assert_eq!(std::fs::read(&to).unwrap(), data.to_vec(), "{url}");
            let e = location.get_into("shared/b.sst", &to).await.unwrap_err();
            assert!(e.contains("b.sst"), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn file_store() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&format!("file://{}/checkpoints", dir.path().display())).await;
    }

    #[test]
    fn bad_urls_are_named() {
        let c = Configuration::new();
        assert!(open_location("/tmp/x", &c).unwrap_err().contains("not a storage URL"));
        assert!(open_location("file://relative", &c).unwrap_err().contains("absolute"));
        assert!(open_location("hdfs://nn/x", &c)
            .unwrap_err()
            .contains("unsupported storage scheme 'hdfs'"));
        assert!(open_location("s3:///x", &c).unwrap_err().contains("names no bucket"));
    }
}
