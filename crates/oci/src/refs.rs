//! The registry's reading of a manifest: which media type it is and what it references (blobs
//! and child manifests). Lenient where the image pipeline's `manifest::parse` is strict:
//! descriptors need only a digest, any config type is accepted, and foreign layers are skipped,
//! because a registry stores what it is given and only checks and garbage-collects references.

use crate::digest::{Digest, DigestError};
use crate::media_type::{DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, is_foreign_layer, manifest_type};
use serde::Deserialize;

/// Why a manifest is refused (the registry answers `MANIFEST_INVALID` with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefsError {
    /// Not JSON, an unsupported schema or type, or a missing field; the sentence says which.
    Invalid(String),
    /// A descriptor (of `config`, `layers` or `manifests`) holds a bad digest.
    BadDigest {
        what: &'static str,
        error: DigestError,
    },
}

/// What a stored manifest points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refs {
    /// The manifest's media type, as stored and served.
    pub media_type: String,
    /// Blobs (config and layers) that must be in the repository.
    pub blobs: Vec<Digest>,
    /// Manifests (children of an index or list) that must be in the repository.
    pub manifests: Vec<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
}

fn invalid(message: String) -> RefsError {
    RefsError::Invalid(message)
}

/// Parses a manifest sent with `content_type`. The type comes from the header when it names a
/// manifest type, else from the body's `mediaType`, else from its shape (OCI allows both to be
/// absent); a body whose `mediaType` contradicts the header is refused.
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Refs, RefsError> {
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the manifest is not valid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid(format!(
            "schemaVersion is {:?}; only schemaVersion 2 manifests (OCI, Docker v2) are supported",
            raw.schema_version
        )));
    }
    let header_type = manifest_type(content_type);
    let body_type = raw.media_type.as_deref();
    let media_type = match (header_type, body_type) {
        (Some(h), Some(b)) if !h.eq_ignore_ascii_case(b) => {
            return Err(invalid(format!(
                "the manifest's mediaType `{b}` does not match its Content-Type `{h}`; send the same type in both"
            )));
        }
        (Some(h), _) => h,
        (None, Some(b)) => manifest_type(Some(b)).ok_or_else(|| {
            invalid(format!(
                "manifest type `{b}` is not supported; push an OCI image manifest or index, or a Docker v2 manifest or manifest list"
            ))
        })?,
        (None, None) if raw.manifests.is_some() => OCI_INDEX,
        (None, None) => OCI_MANIFEST,
    };
    let digests = |descriptors: Vec<Descriptor>,
                   what: &'static str|
     -> Result<Vec<Digest>, RefsError> {
        descriptors
            .into_iter()
            .filter(|d| !is_foreign_layer(d.media_type.as_deref()))
            .map(|d| Digest::parse(&d.digest).map_err(|error| RefsError::BadDigest { what, error }))
            .collect()
    };
    match media_type {
        OCI_INDEX | DOCKER_LIST => {
            let children = raw
                .manifests
                .ok_or_else(|| invalid(format!("a {media_type} needs a `manifests` array")))?;
            Ok(Refs {
                media_type: media_type.to_string(),
                blobs: Vec::new(),
                manifests: digests(children, "manifests")?,
            })
        }
        _ => {
            let config = raw
                .config
                .ok_or_else(|| invalid(format!("a {media_type} needs a `config` descriptor")))?;
            let mut blobs = digests(vec![config], "config")?;
            blobs.extend(digests(raw.layers.unwrap_or_default(), "layers")?);
            Ok(Refs {
                media_type: media_type.to_string(),
                blobs,
                manifests: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::DOCKER_MANIFEST;
    use serde_json::json;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    #[test]
    fn image_manifest_references_config_and_layers() {
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 1},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d("l1"), "size": 1},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": d("f"), "size": 1, "urls": ["http://x"]}
            ]
        });
        let parsed = parse(Some(OCI_MANIFEST), body.to_string().as_bytes()).expect("valid");
        assert_eq!(parsed.media_type, OCI_MANIFEST);
        assert_eq!(
            parsed.blobs,
            vec![Digest::of(b"c"), Digest::of(b"l1")],
            "foreign layers are not required"
        );
        assert!(parsed.manifests.is_empty());
    }

    #[test]
    fn media_type_comes_from_header_body_or_shape() {
        let index = json!({"schemaVersion": 2, "manifests": [{"digest": d("m"), "size": 1}]});
        let bytes = index.to_string();
        assert_eq!(
            parse(None, bytes.as_bytes()).expect("index").media_type,
            OCI_INDEX
        );
        assert_eq!(
            parse(
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
                bytes.as_bytes()
            )
            .expect("list")
            .manifests,
            vec![Digest::of(b"m")]
        );
        let docker = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"digest": d("c"), "size": 1}, "layers": []});
        assert_eq!(
            parse(Some("application/json"), docker.to_string().as_bytes())
                .expect("docker")
                .media_type,
            DOCKER_MANIFEST
        );
    }

    #[test]
    fn bad_manifests_are_refused() {
        let cases = [
            ("not json", None),
            (r#"{"schemaVersion": 1}"#, None),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/x-other"}"#,
                None,
            ),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}"#,
                None,
            ),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}"#,
                None,
            ),
            (
                r#"{"schemaVersion": 2, "config": {"digest": "md5:abc"}, "layers": []}"#,
                None,
            ),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#,
                Some(OCI_MANIFEST),
            ),
        ];
        for (body, content_type) in cases {
            let err = parse(content_type, body.as_bytes()).expect_err(body);
            assert!(
                matches!(err, RefsError::Invalid(_) | RefsError::BadDigest { .. }),
                "{body}: {err:?}"
            );
        }
    }
}
