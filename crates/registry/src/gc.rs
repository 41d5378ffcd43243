//! Garbage collection: mark every blob a manifest revision references (the manifest itself, its
//! config and layers, and the children of indexes, in every repository of every org), then sweep
//! the rest, except blobs younger than the grace period (a push whose blobs are uploaded but
//! whose manifest is not yet). It holds the registry's GC lock for writing, so no manifest is
//! stored and no blob linked while it runs. A manifest it cannot parse stops it before anything
//! is deleted.

use crate::Registry;
use crate::error::{ErrorCode, RegistryError, Result};
use aloft_oci::{Digest, refs};
use std::collections::HashSet;
use std::time::SystemTime;

/// What a garbage collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Nothing was deleted; the counts say what would have been.
    pub dry_run: bool,
    /// Manifest revisions scanned, over all repositories.
    pub manifests: usize,
    /// Blobs kept because a manifest references them.
    pub blobs_referenced: usize,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_young: usize,
    /// Unreferenced blobs deleted.
    pub blobs_deleted: usize,
    /// Bytes freed by deleting them.
    pub bytes_deleted: u64,
    /// Repository links to deleted blobs that were removed with them.
    pub links_removed: usize,
}

impl Registry {
    /// Runs a garbage collection (see [`GcReport`]). With `dry_run`, only counts.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport, RegistryError> {
        let _exclusive = self.inner.gc_lock.write().await;
        let store = &self.inner.store;
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let repos = store.repositories(None).await?;
        let mut marked: HashSet<Digest> = HashSet::new();
        for repo in &repos {
            for (digest, media_type) in store.revisions(repo).await? {
                report.manifests += 1;
                if let Some(bytes) = store.read_blob_bytes(&digest).await? {
                    let parsed = refs::parse(Some(&media_type), &bytes).map_err(|e| {
                        let e = RegistryError::from(e);
                        RegistryError::api(
                            ErrorCode::Internal,
                            format!(
                                "garbage collection stopped before deleting anything: manifest {digest} in {repo} cannot be read ({e}); delete that manifest or fix the store"
                            ),
                        )
                    })?;
                    marked.extend(parsed.blobs);
                    marked.extend(parsed.manifests);
                }
                marked.insert(digest);
            }
        }
        let now = SystemTime::now();
        let mut deleted: HashSet<Digest> = HashSet::new();
        for blob in store.all_blobs().await? {
            if marked.contains(&blob.digest) {
                report.blobs_referenced += 1;
                continue;
            }
            let age = now.duration_since(blob.modified).unwrap_or_default();
            if age < self.inner.config.gc_grace {
                report.blobs_young += 1;
                continue;
            }
            if !dry_run {
                store.remove_blob(&blob.digest).await?;
            }
            report.blobs_deleted += 1;
            report.bytes_deleted += blob.size;
            deleted.insert(blob.digest);
        }
        for repo in &repos {
            for digest in store.layer_links(repo).await? {
                let gone = deleted.contains(&digest) || store.blob_size(&digest).await?.is_none();
                if gone {
                    if !dry_run {
                        store.unlink_layer(repo, &digest).await?;
                    }
                    report.links_removed += 1;
                }
            }
        }
        tracing::info!(?report, "garbage collection finished");
        Ok(report)
    }
}
