//! The registry's operations, one method per API action, after the HTTP edge has parsed the
//! request and authenticated the caller: tenancy checks, storage, and the cache mode's upstream
//! fetches and pushes. Handlers in `http.rs` only translate to and from HTTP.

use crate::Registry;
use crate::auth::Caller;
use crate::body::ChunkSource;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::store::StoredManifest;
use crate::upload::Upload;
use crate::upstream::{ListPage, UpstreamClient};
use aloft_oci::{Digest, ManifestRef, RepoName, refs};
use std::sync::Arc;

/// One page of a sorted list (tags, repositories).
pub(crate) struct Page {
    pub items: Vec<String>,
    /// The last item shown, when more items follow.
    pub next_after: Option<String>,
}

/// What a list endpoint answers.
pub(crate) enum Listing {
    Local(Page),
    /// Answered by the upstream of a cache, passed on as it came.
    Forwarded(ListPage),
}

/// `n` and `last` of a list request.
pub(crate) struct PageRequest {
    pub n: Option<usize>,
    pub last: Option<String>,
}

impl PageRequest {
    fn apply(&self, items: Vec<String>) -> Page {
        let mut items: Vec<String> = match &self.last {
            Some(last) => items.into_iter().filter(|i| i > last).collect(),
            None => items,
        };
        let next_after = match self.n {
            Some(n) if items.len() > n => {
                items.truncate(n);
                items.last().cloned()
            }
            _ => None,
        };
        Page { items, next_after }
    }
}

fn blob_unknown(repo: &RepoName, digest: &Digest) -> RegistryError {
    RegistryError::api(
        ErrorCode::BlobUnknown,
        format!("blob {digest} is not in repository {repo}; push it first"),
    )
}

fn manifest_unknown(repo: &RepoName, reference: &impl std::fmt::Display) -> RegistryError {
    RegistryError::api(
        ErrorCode::ManifestUnknown,
        format!(
            "manifest `{reference}` is not in repository {repo}; check the tag or digest, or push it first"
        ),
    )
}

impl Registry {
    fn upstream(&self) -> Option<&UpstreamClient> {
        self.inner.upstream.as_ref()
    }

    /// Checks that `caller` may use `repo`: repositories belong to the org named by their first
    /// component, and a deploy token reaches only its app's (`<org>/<app>[/...]`). The answer is
    /// the same whether or not the repository exists.
    pub(crate) fn authorize(&self, caller: &Caller, repo: &RepoName) -> Result<()> {
        if caller.reaches(repo.as_str()) {
            return Ok(());
        }
        if let (Some(app), true) = (&caller.app, repo.org() == caller.org) {
            return Err(RegistryError::api(
                ErrorCode::Denied,
                format!(
                    "your token is a deploy token for app `{app}`: it can only push and pull `{}/{app}` (and `{}/{app}/<name>`); use an org token for other repositories",
                    caller.org, caller.org
                ),
            ));
        }
        Err(RegistryError::api(
            ErrorCode::Denied,
            format!(
                "your token belongs to org `{}` and cannot access repositories of other orgs; push and pull `{}/<name>` instead",
                caller.org, caller.org
            ),
        ))
    }

    // ---- blobs -------------------------------------------------------------------------------

    /// The size of a blob in `repo` (HEAD). A cache asks its upstream without fetching the blob.
    pub(crate) async fn blob_size(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<u64> {
        if let Some(size) = self.inner.store.layer_size(repo, digest).await? {
            return Ok(size);
        }
        match self.upstream() {
            Some(upstream) => upstream
                .blob_size(&caller.token, repo, digest)
                .await?
                .ok_or_else(|| blob_unknown(repo, digest)),
            None => Err(blob_unknown(repo, digest)),
        }
    }

    /// Opens a blob of `repo` for reading (GET). A cache fetches a missing blob from its
    /// upstream first.
    pub(crate) async fn open_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(tokio::fs::File, u64)> {
        if self.inner.store.layer_size(repo, digest).await?.is_none() {
            if self.upstream().is_none() {
                return Err(blob_unknown(repo, digest));
            }
            self.pull_blob(caller, repo, digest).await?;
        }
        self.inner
            .store
            .open_blob(digest)
            .await?
            .ok_or_else(|| blob_unknown(repo, digest))
    }

    /// Cache mode: makes `digest` present and linked in `repo`. Concurrent requests for one
    /// digest share a single download (whoever asks first leads it, with their credentials).
    async fn pull_blob(&self, caller: &Caller, repo: &RepoName, digest: &Digest) -> Result<()> {
        let store = &self.inner.store;
        let mut last_error = None;
        for _ in 0..2 {
            if store.blob_size(digest).await?.is_some() {
                break;
            }
            let leader = self.clone();
            let (token, lead_repo, lead_digest) =
                (caller.token.clone(), repo.clone(), digest.clone());
            let (led, outcome) = self
                .inner
                .flights
                .run_detached(&format!("blob:{digest}"), move || async move {
                    leader
                        .download_blob(&token, &lead_repo, &lead_digest)
                        .await
                        .map_err(Arc::new)
                })
                .await;
            let outcome = flown(outcome);
            if store.layer_size(repo, digest).await?.is_some() {
                return Ok(());
            }
            match outcome {
                Err(e) if led => return Err(unshare(&e)),
                // Someone else's download may have failed for reasons of theirs (their
                // credentials): try once more, with ours.
                Err(e) => last_error = Some(e),
                Ok(()) => {}
            }
        }
        if store.layer_size(repo, digest).await?.is_some() {
            return Ok(());
        }
        if store.blob_size(digest).await?.is_none() {
            return Err(last_error.map_or_else(|| blob_unknown(repo, digest), |e| unshare(&e)));
        }
        // Stored for another repository: the upstream decides whether this caller may have it.
        let upstream = self.upstream().ok_or_else(|| blob_unknown(repo, digest))?;
        if upstream
            .blob_size(&caller.token, repo, digest)
            .await?
            .is_none()
        {
            return Err(blob_unknown(repo, digest));
        }
        let _gc = self.inner.gc_lock.read().await;
        store.link_layer(repo, digest).await
    }

    /// The work of one blob flight: download, verify, store, link.
    async fn download_blob(&self, token: &str, repo: &RepoName, digest: &Digest) -> Result<()> {
        let upstream = self.upstream().ok_or_else(|| blob_unknown(repo, digest))?;
        let store = &self.inner.store;
        match upstream.fetch_blob(token, repo, digest, store).await? {
            Some(size) => {
                tracing::info!(%repo, %digest, size, upstream = upstream.url(), "pulled a blob through");
                let _gc = self.inner.gc_lock.read().await;
                store.link_layer(repo, digest).await
            }
            None => Err(blob_unknown(repo, digest)),
        }
    }

    /// Unlinks a blob from `repo` (the bytes stay until garbage collection).
    pub(crate) async fn delete_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<()> {
        if let Some(upstream) = self.upstream() {
            upstream
                .delete(&caller.token, repo, &format!("blobs/{digest}"))
                .await?;
        }
        if self.inner.store.unlink_layer(repo, digest).await? || self.upstream().is_some() {
            Ok(())
        } else {
            Err(blob_unknown(repo, digest))
        }
    }

    // ---- uploads -----------------------------------------------------------------------------

    pub(crate) async fn start_upload(&self, repo: &RepoName) -> Result<Upload> {
        self.inner.uploads.start(repo).await
    }

    /// Cross-repository mount: links `digest` from `from` into `repo` when the caller may read
    /// `from` (same org) and it holds the blob. False means "upload it instead".
    pub(crate) async fn mount_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool> {
        if self.authorize(caller, from).is_err() {
            return Ok(false);
        }
        let store = &self.inner.store;
        if let Some(upstream) = self.upstream() {
            if !upstream.mount(&caller.token, repo, digest, from).await? {
                return Ok(false);
            }
            if store.blob_size(digest).await?.is_some() {
                let _gc = self.inner.gc_lock.read().await;
                store.link_layer(repo, digest).await?;
            }
            return Ok(true);
        }
        let _gc = self.inner.gc_lock.read().await;
        if store.layer_size(from, digest).await?.is_none() {
            return Ok(false);
        }
        store.link_layer(repo, digest).await?;
        Ok(true)
    }

    /// Monolithic upload (`POST ...?digest=` with the blob as body).
    pub(crate) async fn put_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        body: &mut impl ChunkSource,
    ) -> Result<()> {
        match self.inner.store.ingest(body, digest).await? {
            crate::store::Ingest::Stored(_) => self.publish_blob(caller, repo, digest).await,
            crate::store::Ingest::SourceFailed(why) => Err(RegistryError::api(
                ErrorCode::BlobUploadInvalid,
                format!("the upload broke off ({why}); nothing was stored, send it again"),
            )),
        }
    }

    pub(crate) async fn open_upload(&self, repo: &RepoName, id: &str) -> Result<Upload> {
        self.inner.uploads.open(repo, id).await
    }

    pub(crate) async fn append_upload(
        &self,
        upload: &mut Upload,
        range: Option<(u64, u64)>,
        body: &mut impl ChunkSource,
    ) -> Result<u64> {
        self.inner.uploads.append(upload, range, body).await
    }

    /// Completes an upload: the last chunk (possibly empty), the digest check, then the blob
    /// becomes visible in `repo` (in cache mode only after the upstream took it too).
    pub(crate) async fn complete_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        mut upload: Upload,
        range: Option<(u64, u64)>,
        body: &mut impl ChunkSource,
        digest: &Digest,
    ) -> Result<()> {
        self.inner.uploads.append(&mut upload, range, body).await?;
        self.inner
            .uploads
            .finish(upload, &self.inner.store, digest)
            .await?;
        self.publish_blob(caller, repo, digest).await
    }

    pub(crate) async fn cancel_upload(&self, upload: Upload) -> Result<()> {
        self.inner.uploads.cancel(upload).await
    }

    /// Links a blob now in the store into `repo`, after pushing it upstream in cache mode.
    async fn publish_blob(&self, caller: &Caller, repo: &RepoName, digest: &Digest) -> Result<()> {
        let store = &self.inner.store;
        if let Some(upstream) = self.upstream() {
            upstream
                .push_blob(&caller.token, repo, digest, &store.blob_path(digest))
                .await?;
        }
        let _gc = self.inner.gc_lock.read().await;
        store.link_layer(repo, digest).await
    }

    // ---- manifests ---------------------------------------------------------------------------

    /// A manifest by tag or digest. A cache revalidates tags against its upstream and serves its
    /// own copy when the upstream cannot be reached; digests are served locally when present.
    pub(crate) async fn get_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> Result<(Digest, StoredManifest)> {
        let store = &self.inner.store;
        let digest = match (reference, self.upstream()) {
            (ManifestRef::Digest(digest), _) => digest.clone(),
            (ManifestRef::Tag(tag), None) => store
                .tag(repo, tag)
                .await?
                .ok_or_else(|| manifest_unknown(repo, reference))?,
            (ManifestRef::Tag(tag), Some(upstream)) => {
                match upstream.resolve(&caller.token, repo, tag).await {
                    Ok(Some(digest)) => {
                        self.pull_manifest(caller, repo, &digest).await?;
                        let _gc = self.inner.gc_lock.read().await;
                        store.set_tag(repo, tag, &digest).await?;
                        digest
                    }
                    Ok(None) => return Err(manifest_unknown(repo, reference)),
                    Err(e @ RegistryError::UpstreamUnavailable { .. }) => {
                        match store.tag(repo, tag).await? {
                            Some(digest) => {
                                tracing::warn!(%repo, %tag, error = %e, "serving the cached tag");
                                digest
                            }
                            None => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if self.upstream().is_some() {
            self.pull_manifest(caller, repo, &digest).await?;
        }
        let manifest = store
            .manifest(repo, &digest)
            .await?
            .ok_or_else(|| manifest_unknown(repo, reference))?;
        Ok((digest, manifest))
    }

    /// Cache mode: makes the manifest `digest` present in `repo`, fetching it once from upstream.
    async fn pull_manifest(&self, caller: &Caller, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self
            .inner
            .store
            .manifest_type(repo, digest)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let leader = self.clone();
        let (token, lead_repo, lead_digest) = (caller.token.clone(), repo.clone(), digest.clone());
        let (_, outcome) = self
            .inner
            .flights
            .run_detached(&format!("manifest:{repo}@{digest}"), move || async move {
                leader
                    .download_manifest(&token, &lead_repo, &lead_digest)
                    .await
                    .map_err(Arc::new)
            })
            .await;
        flown(outcome).map_err(|e| unshare(&e))
    }

    async fn download_manifest(&self, token: &str, repo: &RepoName, digest: &Digest) -> Result<()> {
        let upstream = self
            .upstream()
            .ok_or_else(|| manifest_unknown(repo, digest))?;
        let fetched = upstream
            .manifest(
                token,
                repo,
                digest.as_str(),
                self.inner.config.max_manifest_bytes,
            )
            .await?
            .ok_or_else(|| manifest_unknown(repo, digest))?;
        let actual = Digest::of(&fetched.bytes);
        if &actual != digest {
            return Err(RegistryError::UpstreamRefused {
                url: upstream.url().to_string(),
                status: 200,
                code: ErrorCode::DigestInvalid.as_str().into(),
                message: format!("asked for manifest {digest}, the upstream sent {actual}"),
            });
        }
        let parsed = refs::parse(fetched.media_type.as_deref(), &fetched.bytes)?;
        let _gc = self.inner.gc_lock.read().await;
        self.inner
            .store
            .put_manifest(repo, digest, &parsed.media_type, &fetched.bytes)
            .await
    }

    /// Stores a manifest after checking that everything it references is in `repo` (a cache
    /// leaves that check to its upstream, which must accept the manifest first).
    pub(crate) async fn put_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &ManifestRef,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if let ManifestRef::Digest(expected) = reference
            && expected != &digest
        {
            return Err(RegistryError::api(
                ErrorCode::DigestInvalid,
                format!(
                    "the manifest hashes to {digest}, not {expected}; push it by tag or by its real digest"
                ),
            ));
        }
        let parsed = refs::parse(content_type, bytes)?;
        if let Some(upstream) = self.upstream() {
            upstream
                .push_manifest(
                    &caller.token,
                    repo,
                    &reference.to_string(),
                    &parsed.media_type,
                    bytes,
                )
                .await?;
        }
        let store = &self.inner.store;
        let _gc = self.inner.gc_lock.read().await;
        if self.upstream().is_none() {
            self.check_references(repo, &parsed).await?;
        }
        store
            .put_manifest(repo, &digest, &parsed.media_type, bytes)
            .await?;
        if let ManifestRef::Tag(tag) = reference {
            store.set_tag(repo, tag, &digest).await?;
        }
        Ok(digest)
    }

    async fn check_references(&self, repo: &RepoName, parsed: &refs::Refs) -> Result<()> {
        let store = &self.inner.store;
        let mut missing = Vec::new();
        for blob in &parsed.blobs {
            if store.layer_size(repo, blob).await?.is_none() {
                missing.push(format!("blob {blob}"));
            }
        }
        for child in &parsed.manifests {
            if store.manifest_type(repo, child).await?.is_none() {
                missing.push(format!("manifest {child}"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(RegistryError::api(
            ErrorCode::ManifestBlobUnknown,
            format!(
                "the manifest references what repository {repo} does not have: {}; push those first, then the manifest",
                missing.join(", ")
            ),
        ))
    }

    /// Deletes a manifest by digest (with the tags pointing to it) or a single tag.
    pub(crate) async fn delete_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> Result<()> {
        if let Some(upstream) = self.upstream() {
            upstream
                .delete(&caller.token, repo, &format!("manifests/{reference}"))
                .await?;
        }
        let store = &self.inner.store;
        let removed = match reference {
            ManifestRef::Digest(digest) => store.delete_manifest(repo, digest).await?,
            ManifestRef::Tag(tag) => store.delete_tag(repo, tag).await?,
        };
        if removed || self.upstream().is_some() {
            Ok(())
        } else {
            Err(manifest_unknown(repo, reference))
        }
    }

    // ---- lists -------------------------------------------------------------------------------

    /// The tags of `repo`. A cache lists the upstream's tags, or its own when the upstream is
    /// unreachable.
    pub(crate) async fn tags(
        &self,
        caller: &Caller,
        repo: &RepoName,
        page: &PageRequest,
    ) -> Result<Listing> {
        if let Some(upstream) = self.upstream() {
            let query = page_query(page);
            match upstream
                .list(&caller.token, &format!("{repo}/tags/list{query}"))
                .await
            {
                Ok(Some(forwarded)) => return Ok(Listing::Forwarded(forwarded)),
                Ok(None) => {}
                Err(e @ RegistryError::UpstreamUnavailable { .. }) => {
                    tracing::warn!(%repo, error = %e, "listing the cached tags");
                }
                Err(e) => return Err(e),
            }
        }
        let tags = self.inner.store.tags(repo).await?.ok_or_else(|| {
            RegistryError::api(
                ErrorCode::NameUnknown,
                format!("repository {repo} does not exist; push an image to it first"),
            )
        })?;
        Ok(Listing::Local(page.apply(tags)))
    }

    /// The repositories of the caller's org (never another org's) that its token reaches.
    pub(crate) async fn catalog(&self, caller: &Caller, page: &PageRequest) -> Result<Page> {
        let repos = self
            .inner
            .store
            .repositories(Some(&caller.org))
            .await?
            .into_iter()
            .map(|r| r.to_string())
            .filter(|r| caller.reaches(r))
            .collect();
        Ok(page.apply(repos))
    }
}

fn page_query(page: &PageRequest) -> String {
    let mut parts = Vec::new();
    if let Some(n) = page.n {
        parts.push(format!("n={n}"));
    }
    if let Some(last) = &page.last {
        parts.push(format!("last={last}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A copy of a shared flight error for one caller.
/// The outcome of an upstream fetch's flight; none means the fetch stopped before it had one.
fn flown(outcome: Option<Result<(), Arc<RegistryError>>>) -> Result<(), Arc<RegistryError>> {
    outcome.unwrap_or_else(|| {
        Err(Arc::new(RegistryError::api(
            ErrorCode::Internal,
            "a fetch from the upstream registry stopped unexpectedly; retry",
        )))
    })
}

fn unshare(error: &Arc<RegistryError>) -> RegistryError {
    match error.as_ref() {
        RegistryError::Api { code, message } => RegistryError::api(*code, message.clone()),
        RegistryError::UpstreamUnavailable {
            url,
            attempts,
            last,
        } => RegistryError::UpstreamUnavailable {
            url: url.clone(),
            attempts: *attempts,
            last: last.clone(),
        },
        RegistryError::UpstreamRefused {
            url,
            status,
            code,
            message,
        } => RegistryError::UpstreamRefused {
            url: url.clone(),
            status: *status,
            code: code.clone(),
            message: message.clone(),
        },
        other => RegistryError::api(ErrorCode::Internal, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RegistryConfig, StaticTokens};
    use std::time::Duration;

    /// A manifest PUT checks its references and stores itself under the GC lock, so a
    /// collection can never run between the check and the store.
    #[tokio::test]
    async fn manifest_puts_wait_for_a_running_gc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = Arc::new(StaticTokens::new([("t", "acme")]));
        let registry = Registry::open(RegistryConfig::new(dir.path()), tokens)
            .await
            .expect("open");
        let caller = Caller {
            org: "acme".into(),
            app: None,
            token: "t".into(),
        };
        let repo = RepoName::parse("acme/app").expect("name");
        let config = b"{}".to_vec();
        let config_digest = Digest::of(&config);
        registry
            .put_blob(
                &caller,
                &repo,
                &config_digest,
                &mut axum::body::Body::from(config),
            )
            .await
            .expect("blob");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": aloft_oci::media_type::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": 2},
            "layers": [],
        })
        .to_string();

        let gc = registry.inner.gc_lock.write().await;
        let put = {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .put_manifest(
                        &caller,
                        &repo,
                        &ManifestRef::Tag("v1".into()),
                        None,
                        manifest.as_bytes(),
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!put.is_finished(), "the PUT waits while GC holds the lock");
        drop(gc);
        put.await.expect("task").expect("stored once GC is done");
    }
}
