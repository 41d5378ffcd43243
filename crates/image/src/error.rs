//! [`ImageError`]: every way the pipeline can fail, each with the context a user needs and a
//! sentence that says what to do next.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Errors of the image pipeline. `Clone` (I/O sources are shared), so that concurrent pulls
/// waiting on the same download all get its error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// The reference string cannot be parsed.
    #[error(
        "invalid image reference `{reference}`: {reason}; write it as `registry/org/name:tag`, `name:tag` or `...@sha256:<64 hex>`"
    )]
    InvalidReference { reference: String, reason: String },

    /// A setting of [`crate::ImageConfig`] is unusable.
    #[error("invalid image config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// A filesystem operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// The filesystem holding the image data ran out of space. Nothing partial was kept.
    #[error(
        "no space left while trying to {action} {}: free space on that filesystem (`aloft image prune` removes unused images) and pull again; nothing partial was kept",
        path.display()
    )]
    DiskFull { action: &'static str, path: PathBuf },

    /// The registry could not be reached (connection errors, 5xx) after every retry.
    #[error(
        "registry {registry} did not answer after {attempts} attempts ({detail}): check that it is running and reachable from this host"
    )]
    RegistryUnavailable {
        registry: String,
        attempts: u32,
        detail: String,
    },

    /// The registry refused the credentials (or wanted some and none were given).
    #[error(
        "registry {registry} refused access to {repository}: {detail}; check the credentials given for the pull"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },

    /// The registry, its token realm or a redirect names an address this host may not reach
    /// (see `netpolicy`).
    #[error(
        "not pulling from registry {registry}: {detail}; images may name public registries, aloft's own registry, or private registries the operator lists in the host config (`private_registries`)"
    )]
    AddressRefused { registry: String, detail: String },

    /// The manifest or blob does not exist.
    #[error("{what} was not found in registry {registry}: check the image name, tag or digest")]
    NotFound { registry: String, what: String },

    /// The registry answered with an unexpected status.
    #[error("registry {registry} answered {status} for {url}: {detail}")]
    RegistryStatus {
        registry: String,
        url: String,
        status: u16,
        detail: String,
    },

    /// Content did not match the digest it was asked for. Nothing of it was kept.
    #[error(
        "{what} does not match its digest (expected {expected}, got {actual}): the registry holds corrupt content or something altered it in transit; nothing was kept"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A manifest, index or image config cannot be used.
    #[error("invalid manifest for {reference}: {detail}")]
    InvalidManifest { reference: String, detail: String },

    /// A media type aloft does not handle.
    #[error("unsupported media type `{media_type}` for {what}: {hint}")]
    UnsupportedMediaType {
        what: String,
        media_type: String,
        hint: &'static str,
    },

    /// An index without a linux/amd64 image, or an image built for another platform.
    #[error(
        "image {reference} has no linux/amd64 variant (it has: {available}); aloft hosts run linux/amd64, so build and push the image for that platform"
    )]
    NoPlatform {
        reference: String,
        available: String,
    },

    /// A layer entry that could write outside the layer, or that aloft refuses by policy.
    #[error(
        "layer {layer}: entry `{entry}` refused: {reason}; the image is unsafe to unpack, nothing of the layer was kept"
    )]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    /// A layer or image exceeded a configured limit (decompression bombs).
    #[error(
        "{what}: {limit} exceeded ({detail}); if the image is trusted raise `limits.{field}` in the image config; nothing of the layer was kept"
    )]
    LimitExceeded {
        what: String,
        limit: &'static str,
        detail: String,
        field: &'static str,
    },

    /// A layer is not a readable (compressed) tar stream.
    #[error("layer {layer} is not a valid tar stream: {detail}; rebuild and push the image")]
    CorruptLayer { layer: String, detail: String },

    /// An external tool is not installed.
    #[error("{tool} was not found: install it with `apt-get install {package}`")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },

    /// An external tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        stderr: String,
    },

    /// Neither the image nor the machine config says what to run.
    #[error(
        "the image has no Entrypoint or Cmd and the machine config sets none: set `init.cmd` (or `init.exec`) in the machine config"
    )]
    NoCommand,

    /// A background task of the pull stopped unexpectedly (the runtime is shutting down).
    #[error("the pull was interrupted ({detail}); pull again")]
    Interrupted { detail: String },

    /// An image asked for by digest is not in this host's store.
    #[error("image {digest} is not in this host's image store: pull it first")]
    ImageNotFound { digest: String },
}

impl ImageError {
    /// An I/O error on `path`, or [`ImageError::DiskFull`] when the filesystem is full.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull
            || source.kind() == io::ErrorKind::QuotaExceeded
        {
            ImageError::DiskFull { action, path }
        } else {
            ImageError::Io {
                action,
                path,
                source: Arc::new(source),
            }
        }
    }
}

impl From<aloft_oci::manifest::ManifestError> for ImageError {
    fn from(e: aloft_oci::manifest::ManifestError) -> Self {
        use aloft_oci::manifest::ManifestError as M;
        match e {
            M::Invalid { reference, detail } => ImageError::InvalidManifest { reference, detail },
            M::UnsupportedMediaType {
                what,
                media_type,
                hint,
            } => ImageError::UnsupportedMediaType {
                what,
                media_type,
                hint,
            },
            M::NoPlatform {
                reference,
                available,
            } => ImageError::NoPlatform {
                reference,
                available,
            },
        }
    }
}

impl From<aloft_oci::layout::LayoutError> for ImageError {
    fn from(e: aloft_oci::layout::LayoutError) -> Self {
        use aloft_oci::layout::LayoutError as L;
        match e {
            L::Io {
                action,
                path,
                source,
            } => ImageError::io(action, path, source),
            L::InvalidIndex { reference, detail } => {
                ImageError::InvalidManifest { reference, detail }
            }
            L::ToolMissing { tool, package } => ImageError::ToolMissing { tool, package },
            L::ToolFailed {
                tool,
                status,
                stderr,
            } => ImageError::ToolFailed {
                tool,
                status,
                stderr,
            },
        }
    }
}
