//! [`ImageConfig`] and the unpacking [`Limits`], with their defaults.

use crate::error::ImageError;
use std::path::PathBuf;
use std::time::Duration;

/// Limits that stop decompression bombs and runaway images. Every limit is checked while the
/// data streams, so a layer is refused as soon as it crosses one, and nothing of it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest uncompressed size of one layer (its tar stream, headers included), in bytes.
    /// Default 8 GiB.
    pub max_layer_bytes: u64,
    /// Largest size of a whole image, in bytes. The sum of the compressed layer sizes the
    /// manifest announces is checked before anything is downloaded; the sum of the uncompressed
    /// sizes once the layers are unpacked, before assembly (each layer is bounded by
    /// `max_layer_bytes` meanwhile, and unpacked layers stay cached until pruned). Default 16 GiB.
    pub max_image_bytes: u64,
    /// Most entries (files, directories, links, whiteouts) in one layer. Default 1,000,000.
    pub max_files: u64,
    /// Largest ratio of uncompressed to compressed size of a layer. Layers whose uncompressed
    /// stream is below [`Limits::RATIO_GRACE_BYTES`] are never refused for their ratio, so tiny
    /// layers of highly repetitive text pass. Default 200 (ordinary layers compress 2-10x; gzip
    /// cannot exceed ~1030x, zstd can reach far more).
    pub max_ratio: u64,
}

impl Limits {
    /// Below this many uncompressed bytes the ratio limit does not apply (16 MiB).
    pub const RATIO_GRACE_BYTES: u64 = 16 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 8 << 30,
            max_image_bytes: 16 << 30,
            max_files: 1_000_000,
            max_ratio: 200,
        }
    }
}

/// Configuration of an [`crate::ImageStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// Where layers, root filesystems and ext4 images are kept (created with mode 0700 so other
    /// host users cannot reach the set-uid files images contain). One store per directory.
    pub data_dir: PathBuf,
    /// The registry a reference without a host names, e.g. `127.0.0.1:5000` (the dev registry).
    pub default_registry: String,
    /// Registries that may be on private, loopback or link-local addresses besides
    /// `default_registry` (which always may): `host` (any port) or `host:port`. Every other
    /// registry, token realm and redirect target must resolve to public addresses only, so an
    /// image reference cannot make the host reach its own network (see the crate doc). Default
    /// empty.
    pub private_registries: Vec<String>,
    /// Unpacking limits.
    pub limits: Limits,
    /// How many layers are downloaded (and unpacked) at once for one pull. Default 3.
    pub download_concurrency: usize,
    /// How many times a request is retried after a connection error, a broken body or a 5xx
    /// answer, with exponential backoff. Default 4 (5 attempts).
    pub retries: u32,
    /// The first backoff delay; doubled after each failed attempt, capped at 10 s. Default 500 ms.
    pub retry_backoff: Duration,
}

impl ImageConfig {
    /// A config with the documented defaults and the dev registry `127.0.0.1:5000`.
    pub fn new(data_dir: impl Into<PathBuf>) -> ImageConfig {
        ImageConfig {
            data_dir: data_dir.into(),
            default_registry: "127.0.0.1:5000".to_string(),
            private_registries: Vec::new(),
            limits: Limits::default(),
            download_concurrency: 3,
            retries: 4,
            retry_backoff: Duration::from_millis(500),
        }
    }

    /// Checks the values that would make the store unusable.
    pub fn validate(&self) -> Result<(), ImageError> {
        let bad = |field, reason: &str| {
            Err(ImageError::InvalidConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.default_registry.is_empty() || self.default_registry.contains('/') {
            return bad(
                "default_registry",
                "must be a host[:port] such as 127.0.0.1:5000",
            );
        }
        if let Err(e) =
            crate::netpolicy::AddressPolicy::new(&self.default_registry, &self.private_registries)
        {
            return bad("private_registries", &e);
        }
        if self.download_concurrency == 0 {
            return bad("download_concurrency", "must be at least 1");
        }
        let l = &self.limits;
        if l.max_layer_bytes == 0 || l.max_image_bytes == 0 || l.max_files == 0 || l.max_ratio == 0
        {
            return bad("limits", "must all be greater than zero");
        }
        Ok(())
    }
}
