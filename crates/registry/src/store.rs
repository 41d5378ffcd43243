//! Content-addressed storage on disk, laid out like the reference distribution registry:
//!
//! ```text
//! <data_dir>/blobs/sha256/<2 hex>/<64 hex>                       every blob and manifest, once
//! <data_dir>/repositories/<org>/<name>/_layers/sha256/<hex>      empty file: blob linked here
//! <data_dir>/repositories/<org>/<name>/_manifests/revisions/sha256/<hex>   the manifest's media type
//! <data_dir>/repositories/<org>/<name>/_manifests/tags/<tag>     the digest the tag points to
//! <data_dir>/uploads/<id>/{state.json,data}                      upload sessions (upload.rs)
//! <data_dir>/tmp/                                                 files being written
//! ```
//!
//! A blob is visible in a repository only when linked there, so storage dedups across orgs while
//! one org can never read another's blob by digest. Nothing appears under `blobs/` before its
//! content was hashed and matched its digest: every write goes to a file on the same filesystem,
//! is fsynced, then renamed into place (and the directory fsynced). Repository directories cannot
//! collide with `_layers`/`_manifests`, since name components never start with `_`.

use crate::body::ChunkSource;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::random_id;
use aloft_oci::{Digest, RepoName};
use sha2::{Digest as _, Sha256};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::{AsyncWriteExt, BufWriter};

/// Write buffer for blobs streamed to disk.
const WRITE_BUFFER: usize = 1024 * 1024;

/// A manifest as stored: its bytes exactly as pushed and the media type it was pushed with.
pub(crate) struct StoredManifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What came of streaming a body into the store.
pub(crate) enum Ingest {
    /// The content matched the digest and is stored; its size.
    Stored(u64),
    /// The body broke off; nothing was stored.
    SourceFailed(String),
}

/// A blob file found by a scan of the store (for garbage collection).
pub(crate) struct BlobFile {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    /// Creates the layout under `root` and empties `tmp/` (files a crash left half-written).
    pub(crate) async fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        let tmp = store.tmp_dir();
        match tokio::fs::remove_dir_all(&tmp).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(RegistryError::io("clear", tmp, e)),
        }
        for dir in [
            root.join("blobs/sha256"),
            root.join("repositories"),
            store.uploads_dir(),
            tmp,
        ] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| RegistryError::io("create", dir, e))?;
        }
        Ok(store)
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh path in `tmp/`, on the same filesystem as the blobs.
    pub(crate) fn tmp_path(&self) -> Result<PathBuf> {
        Ok(self.tmp_dir().join(random_id()?))
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        self.root.join("repositories").join(repo.as_str())
    }

    fn layer_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers/sha256")
            .join(digest.hex())
    }

    fn revision_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests/revisions/sha256")
            .join(digest.hex())
    }

    fn tags_dir(&self, repo: &RepoName) -> PathBuf {
        self.repo_dir(repo).join("_manifests/tags")
    }

    // ---- blobs -------------------------------------------------------------------------------

    /// The size of a stored blob, whichever repository it is linked in.
    pub(crate) async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io("stat", path, e)),
        }
    }

    /// Opens a stored blob for reading, with its size.
    pub(crate) async fn open_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<(tokio::fs::File, u64)>> {
        let path = self.blob_path(digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RegistryError::io("open", path, e)),
        };
        let len = file
            .metadata()
            .await
            .map_err(|e| RegistryError::io("stat", &path, e))?
            .len();
        Ok(Some((file, len)))
    }

    /// The size of a blob if it is linked in `repo` and present.
    pub(crate) async fn layer_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        if !exists(&self.layer_link(repo, digest)).await? {
            return Ok(None);
        }
        self.blob_size(digest).await
    }

    /// Makes a stored blob visible in `repo`. Refreshes the blob's modification time so that a
    /// garbage collection running next sees it as young.
    pub(crate) async fn link_layer(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.touch_blob(digest).await?;
        self.write_atomic(&self.layer_link(repo, digest), b"").await
    }

    /// Removes a blob's link from `repo`; false when it was not linked.
    pub(crate) async fn unlink_layer(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        remove_file(&self.layer_link(repo, digest)).await
    }

    /// Moves `file`, whose content is known to hash to `digest`, into the blob store. When the
    /// blob is already there, `file` is dropped instead and the stored blob is refreshed.
    pub(crate) async fn commit_blob(&self, file: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if exists(&dest).await? {
            remove_file(file).await?;
            return self.touch_blob(digest).await;
        }
        let handle = tokio::fs::File::open(file)
            .await
            .map_err(|e| RegistryError::io("open", file, e))?;
        handle
            .sync_all()
            .await
            .map_err(|e| RegistryError::io("fsync", file, e))?;
        drop(handle);
        rename_into_place(file, &dest).await
    }

    async fn touch_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file.into_std().await,
            // Not stored (a manifest link being rewritten, a missing blob): nothing to refresh.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RegistryError::io("open", path, e)),
        };
        let touched = tokio::task::spawn_blocking(move || file.set_modified(SystemTime::now()))
            .await
            .map_err(|e| RegistryError::io("touch", &path, std::io::Error::other(e)))?;
        touched.map_err(|e| RegistryError::io("touch", path, e))
    }

    /// Streams `source` into the store, hashing as it goes; the blob becomes visible (to the
    /// store, not yet to any repository) only if it hashes to `expected`.
    pub(crate) async fn ingest(
        &self,
        source: &mut impl ChunkSource,
        expected: &Digest,
    ) -> Result<Ingest> {
        let tmp = self.tmp_path()?;
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| RegistryError::io("create", &tmp, e))?;
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Sha256::new();
        let copied = copy_hashing(source, &mut writer, &mut hasher, &tmp).await;
        let result = match copied {
            Ok(Ok(size)) => {
                let actual = Digest::from_hasher(hasher);
                if &actual == expected {
                    self.commit_blob(&tmp, expected)
                        .await
                        .map(|()| Ingest::Stored(size))
                } else {
                    Err(RegistryError::api(
                        ErrorCode::DigestInvalid,
                        format!(
                            "the content hashes to {actual}, not {expected}; nothing was stored, send the blob again with its real digest"
                        ),
                    ))
                }
            }
            Ok(Err(source_error)) => Ok(Ingest::SourceFailed(source_error)),
            Err(e) => Err(e),
        };
        if !matches!(result, Ok(Ingest::Stored(_))) {
            remove_file(&tmp).await?;
        }
        result
    }

    /// Deletes a blob from the store (garbage collection only).
    pub(crate) async fn remove_blob(&self, digest: &Digest) -> Result<()> {
        remove_file(&self.blob_path(digest)).await.map(drop)
    }

    /// Every blob file in the store.
    pub(crate) async fn all_blobs(&self) -> Result<Vec<BlobFile>> {
        let mut blobs = Vec::new();
        for prefix in list_dir(&self.root.join("blobs/sha256")).await? {
            let dir = self.root.join("blobs/sha256").join(&prefix);
            for name in list_dir(&dir).await? {
                let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                    continue;
                };
                let path = dir.join(&name);
                let meta = match tokio::fs::metadata(&path).await {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(RegistryError::io("stat", path, e)),
                };
                let modified = meta
                    .modified()
                    .map_err(|e| RegistryError::io("read the modification time of", &path, e))?;
                blobs.push(BlobFile {
                    digest,
                    size: meta.len(),
                    modified,
                });
            }
        }
        Ok(blobs)
    }

    /// The blobs linked in `repo` (stored or not).
    pub(crate) async fn layer_links(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        digests_in(&self.repo_dir(repo).join("_layers/sha256")).await
    }

    // ---- manifests and tags ------------------------------------------------------------------

    /// Stores a manifest's bytes (once, content-addressed) and links it in `repo`.
    pub(crate) async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let path = self.blob_path(digest);
        if exists(&path).await? {
            self.touch_blob(digest).await?;
        } else {
            self.write_atomic(&path, bytes).await?;
        }
        self.link_manifest(repo, digest, media_type).await
    }

    /// Links an already stored manifest in `repo`.
    pub(crate) async fn link_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: &str,
    ) -> Result<()> {
        self.touch_blob(digest).await?;
        self.write_atomic(&self.revision_link(repo, digest), media_type.as_bytes())
            .await
    }

    /// The media type of a manifest linked in `repo`, if its bytes are stored.
    pub(crate) async fn manifest_type(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let Some(media_type) = read_text(&self.revision_link(repo, digest)).await? else {
            return Ok(None);
        };
        Ok(self.blob_size(digest).await?.map(|_| media_type))
    }

    /// A manifest linked in `repo`.
    pub(crate) async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        let Some(media_type) = read_text(&self.revision_link(repo, digest)).await? else {
            return Ok(None);
        };
        Ok(self
            .read_blob_bytes(digest)
            .await?
            .map(|bytes| StoredManifest { media_type, bytes }))
    }

    /// The bytes of a stored blob (manifests only: they are small).
    pub(crate) async fn read_blob_bytes(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io("read", path, e)),
        }
    }

    /// The manifests linked in `repo`, with their media types.
    pub(crate) async fn revisions(&self, repo: &RepoName) -> Result<Vec<(Digest, String)>> {
        let dir = self.repo_dir(repo).join("_manifests/revisions/sha256");
        let mut revisions = Vec::new();
        for digest in digests_in(&dir).await? {
            if let Some(media_type) = read_text(&dir.join(digest.hex())).await? {
                revisions.push((digest, media_type));
            }
        }
        Ok(revisions)
    }

    /// Unlinks a manifest from `repo` and removes the tags that point to it.
    pub(crate) async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let removed = remove_file(&self.revision_link(repo, digest)).await?;
        for tag in self.tags(repo).await?.unwrap_or_default() {
            if self.tag(repo, &tag).await?.as_ref() == Some(digest) {
                self.delete_tag(repo, &tag).await?;
            }
        }
        Ok(removed)
    }

    pub(crate) async fn tag(&self, repo: &RepoName, tag: &str) -> Result<Option<Digest>> {
        let path = self.tags_dir(repo).join(tag);
        let Some(text) = read_text(&path).await? else {
            return Ok(None);
        };
        Digest::parse(text.trim()).map(Some).map_err(|_| {
            RegistryError::io(
                "parse",
                path,
                std::io::Error::new(ErrorKind::InvalidData, "the tag file holds no digest"),
            )
        })
    }

    pub(crate) async fn set_tag(&self, repo: &RepoName, tag: &str, digest: &Digest) -> Result<()> {
        self.write_atomic(&self.tags_dir(repo).join(tag), digest.as_str().as_bytes())
            .await
    }

    pub(crate) async fn delete_tag(&self, repo: &RepoName, tag: &str) -> Result<bool> {
        remove_file(&self.tags_dir(repo).join(tag)).await
    }

    /// The tags of `repo`, sorted; `None` when the repository does not exist.
    pub(crate) async fn tags(&self, repo: &RepoName) -> Result<Option<Vec<String>>> {
        if !exists(&self.repo_dir(repo)).await? {
            return Ok(None);
        }
        let mut tags = list_dir(&self.tags_dir(repo)).await?;
        tags.sort();
        Ok(Some(tags))
    }

    /// The repositories under `prefix` (an org, or every org when `None`), sorted.
    pub(crate) async fn repositories(&self, org: Option<&str>) -> Result<Vec<RepoName>> {
        let base = self.root.join("repositories");
        let mut pending: Vec<String> = match org {
            Some(org) => vec![org.to_string()],
            None => list_dir(&base).await?,
        };
        let mut repos = Vec::new();
        while let Some(relative) = pending.pop() {
            let children = list_dir(&base.join(&relative)).await?;
            if children.iter().any(|c| c.starts_with('_'))
                && let Ok(repo) = RepoName::parse(&relative)
            {
                repos.push(repo);
            }
            pending.extend(
                children
                    .into_iter()
                    .filter(|c| !c.starts_with('_'))
                    .map(|c| format!("{relative}/{c}")),
            );
        }
        repos.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(repos)
    }

    /// Removes files in `tmp/` untouched for `ttl` (left by requests that were cut off).
    pub(crate) async fn cleanup_tmp(&self, ttl: std::time::Duration) -> Result<()> {
        let dir = self.tmp_dir();
        for name in list_dir(&dir).await? {
            let path = dir.join(name);
            let Ok(modified) = tokio::fs::metadata(&path).await.and_then(|m| m.modified()) else {
                continue;
            };
            if SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default()
                >= ttl
            {
                remove_file(&path).await?;
            }
        }
        Ok(())
    }

    // ---- helpers -----------------------------------------------------------------------------

    /// Writes `bytes` to `path` so that readers see the old file or the whole new one.
    async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| RegistryError::io("create", dir, e))?;
        let (target, bytes) = (path.to_path_buf(), bytes.to_vec());
        tokio::task::spawn_blocking(move || aloft_durable::write(&target, &bytes, 0o644))
            .await
            .map_err(|e| RegistryError::io("write", path, std::io::Error::other(e)))?
            .map_err(|e| RegistryError::io("write", path, e))
    }
}

/// Copies `source` into `writer` (flushed at the end), feeding `hasher`. The outer error is the
/// disk's; the inner one is the source's.
pub(crate) async fn copy_hashing(
    source: &mut impl ChunkSource,
    writer: &mut BufWriter<tokio::fs::File>,
    hasher: &mut Sha256,
    path: &Path,
) -> Result<Result<u64, String>> {
    let mut total = 0u64;
    loop {
        match source.next_chunk().await {
            Ok(Some(chunk)) => {
                writer
                    .write_all(&chunk)
                    .await
                    .map_err(|e| RegistryError::io("write", path, e))?;
                hasher.update(&chunk);
                total += chunk.len() as u64;
            }
            Ok(None) => break,
            Err(e) => return Ok(Err(e)),
        }
    }
    writer
        .flush()
        .await
        .map_err(|e| RegistryError::io("write", path, e))?;
    Ok(Ok(total))
}

/// Renames `from` to `to` (creating `to`'s directory) and fsyncs that directory.
async fn rename_into_place(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("/"));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| RegistryError::io("create", dir, e))?;
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| RegistryError::io("rename into", to, e))?;
    let handle = tokio::fs::File::open(dir)
        .await
        .map_err(|e| RegistryError::io("open", dir, e))?;
    handle
        .sync_all()
        .await
        .map_err(|e| RegistryError::io("fsync", dir, e))
}

pub(crate) async fn exists(path: &Path) -> Result<bool> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| RegistryError::io("stat", path, e))
}

/// Removes a file; false when it did not exist.
pub(crate) async fn remove_file(path: &Path) -> Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RegistryError::io("remove", path, e)),
    }
}

async fn read_text(path: &Path) -> Result<Option<String>> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::io("read", path, e)),
    }
}

/// The names in a directory; empty when it does not exist.
pub(crate) async fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RegistryError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| RegistryError::io("list", dir, e))?
    {
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

async fn digests_in(dir: &Path) -> Result<Vec<Digest>> {
    Ok(list_dir(dir)
        .await?
        .into_iter()
        .filter_map(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
        .collect())
}
