//! OCI / Docker schema2 manifests, indexes and image configs: the JSON aloft reads (and the
//! OCI layout writer produces), their size limits, the image pipeline's strict parse, and
//! linux/amd64 selection from an index. (The registry's lenient reading is in `refs`.)

use crate::digest;
use crate::media_type::{
    DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1, OCI_INDEX, OCI_MANIFEST, is_config,
    is_image_manifest, is_layer,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A manifest that aloft cannot run, with the reference it was read for. The image pipeline
/// turns each variant into its own error of the same name and sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, not the expected shape, or a bad digest.
    #[error("invalid manifest for {reference}: {detail}")]
    Invalid { reference: String, detail: String },
    /// A media type aloft does not run.
    #[error("unsupported media type `{media_type}` for {what}: {hint}")]
    UnsupportedMediaType {
        what: String,
        media_type: String,
        hint: &'static str,
    },
    /// An index without a linux/amd64 manifest.
    #[error(
        "image {reference} has no linux/amd64 variant (it has: {available}); aloft hosts run linux/amd64, so build and push the image for that platform"
    )]
    NoPlatform {
        reference: String,
        available: String,
    },
}

/// Largest manifest or index aloft reads (the distribution spec suggests registries accept 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config aloft reads.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema2: same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config aloft uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `config` inside an image config (Docker's capitalised field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// A manifest body as the registry sent it.
pub enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

/// Parses a manifest or index, by the Content-Type the registry sent, else by the body's own
/// `mediaType`, else by its shape.
pub fn parse(
    body: &[u8],
    content_type: Option<&str>,
    reference: &str,
) -> Result<Parsed, ManifestError> {
    let invalid = |detail: String| ManifestError::Invalid {
        reference: reference.to_string(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let body_type = value.get("mediaType").and_then(|v| v.as_str());
    // Content-Type may carry parameters (`; charset=...`); ignore a generic JSON type.
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media_type = body_type.or(header_type).map(str::to_string);
    let kind = match media_type.as_deref() {
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => "manifest",
        Some(OCI_INDEX) | Some(DOCKER_LIST) => "index",
        Some(t) if t.starts_with(DOCKER_SCHEMA1) => {
            return Err(ManifestError::UnsupportedMediaType {
                what: format!("manifest of {reference}"),
                media_type: t.to_string(),
                hint: "Docker schema1 manifests are deprecated; push the image again with a current tool",
            });
        }
        Some(t) => {
            return Err(ManifestError::UnsupportedMediaType {
                what: format!("manifest of {reference}"),
                media_type: t.to_string(),
                hint: "aloft runs OCI and Docker schema2 images",
            });
        }
        None if value.get("manifests").is_some() => "index",
        None => "manifest",
    };
    if kind == "index" {
        let index: Index =
            serde_json::from_value(value).map_err(|e| invalid(format!("bad index: {e}")))?;
        Ok(Parsed::Index(index))
    } else {
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| invalid(format!("bad manifest: {e}")))?;
        validate_manifest(&manifest, reference)?;
        Ok(Parsed::Manifest(manifest))
    }
}

/// Checks the digests and media types of a manifest's config and layers.
fn validate_manifest(m: &Manifest, reference: &str) -> Result<(), ManifestError> {
    let invalid = |detail: String| ManifestError::Invalid {
        reference: reference.to_string(),
        detail,
    };
    if m.schema_version != 2 {
        return Err(invalid(format!(
            "schemaVersion {} (expected 2)",
            m.schema_version
        )));
    }
    digest::hex_of(&m.config.digest).map_err(|e| invalid(e.detail()))?;
    if !is_config(&m.config.media_type) {
        return Err(ManifestError::UnsupportedMediaType {
            what: format!("the config of {reference}"),
            media_type: m.config.media_type.clone(),
            hint: "this is not a container image (an artifact such as a Helm chart or a signature?)",
        });
    }
    if m.config.size > MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "the image config is {} bytes (at most {MAX_CONFIG_BYTES})",
            m.config.size
        )));
    }
    for layer in &m.layers {
        digest::hex_of(&layer.digest).map_err(|e| invalid(e.detail()))?;
        if !is_layer(&layer.media_type) {
            return Err(ManifestError::UnsupportedMediaType {
                what: format!("layer {} of {reference}", layer.digest),
                media_type: layer.media_type.clone(),
                hint: "aloft unpacks tar layers, uncompressed or compressed with gzip or zstd (encrypted layers are not supported)",
            });
        }
    }
    Ok(())
}

/// The linux/amd64 manifest of an index, or an error listing the platforms it has.
pub fn select_platform<'a>(
    index: &'a Index,
    reference: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let found = index.manifests.iter().find(|d| {
        is_image_manifest(&d.media_type)
            && d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    });
    if let Some(d) = found {
        digest::hex_of(&d.digest).map_err(|e| ManifestError::Invalid {
            reference: reference.to_string(),
            detail: e.detail(),
        })?;
        return Ok(d);
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        // attestation manifests (buildkit) are listed as unknown/unknown
        .filter(|p| p.os != "unknown")
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    available.dedup();
    Err(ManifestError::NoPlatform {
        reference: reference.to_string(),
        available: if available.is_empty() {
            "no platform listed".to_string()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::DOCKER_CONFIG;

    fn desc(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size: 100,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn picks_linux_amd64_from_an_index() {
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                desc("linux", "arm64", Some("v8"), 1),
                desc("linux", "amd64", None, 2),
                desc("unknown", "unknown", None, 3),
            ],
        };
        let d = select_platform(&index, "x").unwrap();
        assert_eq!(d.digest, format!("sha256:{}", hex::encode([2u8; 32])));
    }

    #[test]
    fn missing_platform_lists_what_there_is() {
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                desc("linux", "arm64", Some("v8"), 1),
                desc("linux", "arm", Some("v7"), 2),
                desc("windows", "amd64", None, 3),
                desc("unknown", "unknown", None, 4),
            ],
        };
        let e = select_platform(&index, "reg/acme/app:v1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/arm64/v8, linux/arm/v7, windows/amd64"),
            "{e}"
        );
        assert!(e.contains("reg/acme/app:v1"), "{e}");
    }

    #[test]
    fn parses_by_content_type_or_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(index, None, "x").unwrap(), Parsed::Index(_)));
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{DOCKER_CONFIG}","digest":"sha256:{h}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{h}","size":3}}]}}"#,
            h = "a".repeat(64)
        );
        assert!(matches!(
            parse(m.as_bytes(), Some(DOCKER_MANIFEST), "x").unwrap(),
            Parsed::Manifest(_)
        ));
        let schema1 = br#"{"schemaVersion":1}"#;
        let e = parse(
            schema1,
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            "x",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("schema1"), "{e}");
        let helm = m.replace(DOCKER_CONFIG, "application/vnd.cncf.helm.config.v1+json");
        let e = parse(helm.as_bytes(), None, "x").err().unwrap().to_string();
        assert!(e.contains("not a container image"), "{e}");
        let bad_digest = m.replace(&format!("sha256:{}", "a".repeat(64)), "sha256:../../x");
        assert!(parse(bad_digest.as_bytes(), None, "x").is_err());
    }
}
