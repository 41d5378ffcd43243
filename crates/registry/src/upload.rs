//! Blob upload sessions: `uploads/<id>/state.json` (repository, start time) and
//! `uploads/<id>/data` (the bytes received so far; its length is the session's offset, so a
//! session survives a restart). Chunks must arrive in order. The SHA-256 of the data is kept in
//! memory while chunks stream in; when it cannot be trusted (after a restart, or a chunk that
//! broke off) the data is hashed again when the upload completes. Nothing becomes visible before
//! [`Uploads::finish`] has matched the digest and moved the data into the blob store.

use crate::body::ChunkSource;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::store::{Store, copy_hashing, exists, list_dir};
use crate::{random_id, unix_now};
use aloft_oci::{Digest, RepoName};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

const HASH_BUFFER: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct State {
    repo: String,
    started_at: u64,
}

/// In-memory companion of an upload: serializes requests on it and carries the running hash.
#[derive(Default)]
struct Session {
    /// Set once the upload is finished, cancelled or expired: later holders must not touch it.
    removed: bool,
    /// The hash of the first `.0` bytes of the data.
    hasher: Option<(u64, Sha256)>,
}

/// An upload session held exclusively by one request.
pub(crate) struct Upload {
    pub id: String,
    dir: PathBuf,
    session: tokio::sync::OwnedMutexGuard<Session>,
}

impl Upload {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Bytes received so far.
    pub(crate) async fn offset(&self) -> Result<u64> {
        let data = self.data();
        tokio::fs::metadata(&data)
            .await
            .map(|m| m.len())
            .map_err(|e| RegistryError::io("stat", data, e))
    }
}

pub(crate) struct Uploads {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

fn unknown(id: &str) -> RegistryError {
    RegistryError::api(
        ErrorCode::BlobUploadUnknown,
        format!(
            "upload `{id}` is not known here: it finished, was cancelled or expired, or belongs to another repository; start a new one with POST /v2/<name>/blobs/uploads/"
        ),
    )
}

impl Uploads {
    pub(crate) fn new(dir: PathBuf) -> Uploads {
        Uploads {
            dir,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Starts an upload to `repo`.
    pub(crate) async fn start(&self, repo: &RepoName) -> Result<Upload> {
        let id = random_id()?;
        let dir = self.dir.join(&id);
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|e| RegistryError::io("create", &dir, e))?;
        let state = serde_json::to_vec(&State {
            repo: repo.to_string(),
            started_at: unix_now(),
        })
        .map_err(|e| RegistryError::io("encode", &dir, std::io::Error::other(e)))?;
        let state_path = dir.join("state.json");
        tokio::fs::write(&state_path, state)
            .await
            .map_err(|e| RegistryError::io("write", state_path, e))?;
        let data = dir.join("data");
        tokio::fs::write(&data, b"")
            .await
            .map_err(|e| RegistryError::io("create", data, e))?;
        self.open(repo, &id).await
    }

    /// Takes the upload `id` of `repo` for one request (waiting for another request on it).
    pub(crate) async fn open(&self, repo: &RepoName, id: &str) -> Result<Upload> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown(id));
        }
        let session = self
            .sessions
            .lock()
            .entry(id.to_string())
            .or_default()
            .clone();
        let session = session.lock_owned().await;
        let dir = self.dir.join(id);
        if session.removed {
            return Err(unknown(id));
        }
        let state_path = dir.join("state.json");
        let state: State = match tokio::fs::read(&state_path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| unknown(id))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.sessions.lock().remove(id);
                return Err(unknown(id));
            }
            Err(e) => return Err(RegistryError::io("read", state_path, e)),
        };
        if state.repo != repo.as_str() {
            return Err(unknown(id));
        }
        Ok(Upload {
            id: id.to_string(),
            dir,
            session,
        })
    }

    /// Appends a chunk. `range` (from `Content-Range`, inclusive) must start at the current
    /// offset, and when given the body must have exactly its length; a chunk that breaks off or
    /// does not fit is rolled back.
    pub(crate) async fn append(
        &self,
        upload: &mut Upload,
        range: Option<(u64, u64)>,
        source: &mut impl ChunkSource,
    ) -> Result<u64> {
        let offset = upload.offset().await?;
        if let Some((start, _)) = range
            && start != offset
        {
            return Err(RegistryError::api(
                ErrorCode::UploadOutOfOrder,
                format!(
                    "this chunk starts at byte {start} but the upload has {offset} bytes; send the chunk that starts at {offset} (GET the upload URL for its current range)"
                ),
            ));
        }
        // Taken out while streaming: if this request is dropped half-way, the session is left
        // without a hash and the data will be hashed again.
        let mut hasher = match upload.session.hasher.take() {
            Some((hashed, hasher)) if hashed == offset => Some(hasher),
            _ if offset == 0 => Some(Sha256::new()),
            _ => None,
        };
        let data = upload.data();
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&data)
            .await
            .map_err(|e| RegistryError::io("open", &data, e))?;
        let mut writer = BufWriter::with_capacity(HASH_BUFFER, file);
        let mut scratch = Sha256::new();
        let copied = copy_hashing(
            source,
            &mut writer,
            hasher.as_mut().unwrap_or(&mut scratch),
            &data,
        )
        .await;
        // Wait for writes still in flight, so that a rollback below truncates after them.
        let flushed = writer.flush().await;
        drop(writer);
        let copied = match (copied, flushed) {
            (Ok(Ok(_)), Err(e)) => Err(RegistryError::io("write", &data, e)),
            (copied, _) => copied,
        };
        let failure = match copied {
            Ok(Ok(len)) => match range {
                Some((start, end))
                    if end.checked_sub(start).and_then(|n| n.checked_add(1)) != Some(len) =>
                {
                    RegistryError::api(
                        ErrorCode::SizeInvalid,
                        format!(
                            "Content-Range {start}-{end} announces {} bytes but the body had {len}; send the chunk again",
                            end.saturating_sub(start).saturating_add(1)
                        ),
                    )
                }
                _ => {
                    let new_offset = offset + len;
                    upload.session.hasher = hasher.map(|h| (new_offset, h));
                    return Ok(new_offset);
                }
            },
            Ok(Err(source_error)) => RegistryError::api(
                ErrorCode::BlobUploadInvalid,
                format!(
                    "the chunk broke off ({source_error}); it was discarded, send it again from byte {offset}"
                ),
            ),
            Err(e) => e,
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .await
            .map_err(|e| RegistryError::io("open", &data, e))?;
        file.set_len(offset)
            .await
            .map_err(|e| RegistryError::io("truncate", &data, e))?;
        Err(failure)
    }

    /// Completes the upload: the data must hash to `digest`. On success the blob is in the store
    /// (not yet linked to any repository); on a mismatch nothing is kept. Either way the session
    /// is gone.
    pub(crate) async fn finish(
        &self,
        mut upload: Upload,
        store: &Store,
        digest: &Digest,
    ) -> Result<u64> {
        let data = upload.data();
        let size = upload.offset().await?;
        let actual = match upload.session.hasher.take() {
            Some((hashed, hasher)) if hashed == size => Digest::from_hasher(hasher),
            _ => hash_file(&data).await?,
        };
        let result = if &actual == digest {
            store.commit_blob(&data, digest).await.map(|()| size)
        } else {
            Err(RegistryError::api(
                ErrorCode::DigestInvalid,
                format!(
                    "the uploaded content hashes to {actual}, not {digest}; nothing was stored and the upload was discarded, push the blob again"
                ),
            ))
        };
        self.remove(upload).await?;
        result
    }

    /// Cancels the upload and deletes what was received.
    pub(crate) async fn cancel(&self, upload: Upload) -> Result<()> {
        self.remove(upload).await
    }

    async fn remove(&self, mut upload: Upload) -> Result<()> {
        upload.session.removed = true;
        self.sessions.lock().remove(&upload.id);
        match tokio::fs::remove_dir_all(&upload.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RegistryError::io("remove", upload.dir.clone(), e)),
        }
    }

    /// Removes uploads that received nothing for `ttl`; uploads a request is working on are
    /// left alone. Returns how many were removed.
    pub(crate) async fn cleanup(&self, ttl: Duration) -> Result<usize> {
        let mut removed = 0;
        for id in list_dir(&self.dir).await? {
            let session = self.sessions.lock().entry(id.clone()).or_default().clone();
            let Ok(mut session) = session.try_lock_owned() else {
                continue;
            };
            let dir = self.dir.join(&id);
            if session.removed || !exists(&dir).await? {
                continue;
            }
            let mut last_activity = SystemTime::UNIX_EPOCH;
            for path in [dir.clone(), dir.join("state.json"), dir.join("data")] {
                if let Ok(modified) = tokio::fs::metadata(&path).await.and_then(|m| m.modified()) {
                    last_activity = last_activity.max(modified);
                }
            }
            let idle = SystemTime::now()
                .duration_since(last_activity)
                .unwrap_or_default();
            if idle < ttl {
                continue;
            }
            session.removed = true;
            self.sessions.lock().remove(&id);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(RegistryError::io("remove", dir, e)),
            }
            tracing::info!(upload = %id, idle_secs = idle.as_secs(), "removed an abandoned upload");
            removed += 1;
        }
        Ok(removed)
    }
}

async fn hash_file(path: &std::path::Path) -> Result<Digest> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| RegistryError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| RegistryError::io("read", path, e))?;
        if n == 0 {
            return Ok(Digest::from_hasher(hasher));
        }
        hasher.update(&buf[..n]);
    }
}
