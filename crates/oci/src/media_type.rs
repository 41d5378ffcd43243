//! Media types of OCI and Docker schema2 content: manifests, indexes, configs and layers, the
//! `Accept` header of manifest requests, which layers are foreign (never pushed), and how a
//! layer is compressed ([`Compression`]).

use serde::{Deserialize, Serialize};

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker schema2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker schema2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The prefix of Docker schema1 manifest types (deprecated, not supported).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";
/// An uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// How a layer's tar stream is compressed (detected from its first bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (`1f 8b`), possibly several members.
    #[default]
    Gzip,
    /// zstd (`28 b5 2f fd`), possibly several frames.
    Zstd,
}

impl Compression {
    /// The compression of a stream that starts with `head` (trusted over any media type).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type of a tar stream compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

/// Every manifest type aloft stores and runs (image manifests and indexes, OCI and Docker).
pub const MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// The `Accept` header of manifest requests (the image pipeline's pulls, the registry cache's
/// upstream fetches): every type of [`MANIFEST_TYPES`].
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The media type named by a `Content-Type` value, without parameters and compared without
/// case, if it is one of [`MANIFEST_TYPES`].
pub fn manifest_type(content_type: Option<&str>) -> Option<&'static str> {
    let essence = content_type?.split(';').next()?.trim();
    MANIFEST_TYPES
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(essence))
}

/// Whether `t` is an image manifest type (not an index).
pub fn is_image_manifest(t: &str) -> bool {
    t == OCI_MANIFEST || t == DOCKER_MANIFEST
}

/// Whether `t` is an index / manifest list type.
pub fn is_index(t: &str) -> bool {
    t == OCI_INDEX || t == DOCKER_LIST
}

/// Whether `t` is an image config type.
pub fn is_config(t: &str) -> bool {
    t == OCI_CONFIG || t == DOCKER_CONFIG
}

/// Layer media types aloft unpacks (compression is detected from the bytes themselves).
pub fn is_layer(t: &str) -> bool {
    matches!(
        t,
        OCI_LAYER_TAR
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Layers that are never pushed to a registry (their `urls` point elsewhere), so a manifest may
/// reference them without the blob being present.
pub fn is_foreign_layer(media_type: Option<&str>) -> bool {
    media_type.is_some_and(|t| {
        t == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            || t.starts_with("application/vnd.oci.image.layer.nondistributable.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_every_manifest_type() {
        for t in MANIFEST_TYPES {
            assert!(ACCEPT.contains(t), "{t}");
        }
        assert_eq!(ACCEPT.split(", ").count(), MANIFEST_TYPES.len());
    }

    #[test]
    fn content_types_are_matched_without_parameters_or_case() {
        assert_eq!(
            manifest_type(Some(
                "Application/VND.oci.image.index.v1+json; charset=utf-8"
            )),
            Some(OCI_INDEX)
        );
        assert_eq!(manifest_type(Some("application/json")), None);
        assert_eq!(manifest_type(None), None);
        assert!(is_foreign_layer(Some(
            "application/vnd.oci.image.layer.nondistributable.v1.tar"
        )));
        assert!(!is_foreign_layer(Some(OCI_LAYER_GZIP)) && !is_foreign_layer(None));
    }
}
