//! [`Reference`]: which image to pull, from which registry.

use crate::error::ImageError;
use aloft_oci::{digest, name};
use std::fmt;

/// A parsed image reference: `registry/repository[:tag][@sha256:<hex>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`, e.g. `127.0.0.1:5000`.
    pub registry: String,
    /// The repository path, e.g. `personal/hello`.
    pub repository: String,
    /// The tag, if one was given (`latest` when neither a tag nor a digest was).
    pub tag: Option<String>,
    /// The manifest digest, if one was given (`sha256:<64 hex>`); it wins over the tag.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `s`:
    ///
    /// - `host[:port]/path[:tag][@digest]`: a first component holding a `.` or a `:`, or
    ///   `localhost`, is a registry host;
    /// - `name[:tag][@digest]` (one path component, no host) is shorthand for the org's own
    ///   repository: `<default_registry>/<org>/name`;
    /// - `other/name[:tag]` (several components, no host) is `<default_registry>/other/name`
    ///   (aloft has no public default registry like Docker Hub).
    ///
    /// A reference with neither tag nor digest gets the tag `latest`.
    pub fn parse(s: &str, default_registry: &str, org: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        if s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "it is too long or contains spaces or control characters".into(),
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                digest::hex_of(d).map_err(|e| invalid(e.detail()))?;
                (rest, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (registry, path, explicit_registry) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path, true)
            }
            _ => (default_registry.to_string(), rest, false),
        };
        validate_host(&registry).map_err(invalid)?;
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t.to_string())),
            _ => (path, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(invalid)?;
        }
        let repository = if !explicit_registry && !path.contains('/') {
            if org.is_empty() {
                return Err(invalid(format!(
                    "`{path}` names no org; write `<org>/{path}` or a full reference"
                )));
            }
            format!("{org}/{path}")
        } else {
            path.to_string()
        };
        validate_repository(&repository).map_err(invalid)?;
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest if any, else the tag.
    pub(crate) fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{host}` is not a registry host[:port]"))
    }
}

/// The distribution spec's tag grammar ([`aloft_oci::name::is_valid_tag`]).
fn validate_tag(tag: &str) -> Result<(), String> {
    if name::is_valid_tag(tag) {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1-128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

/// The distribution spec's repository grammar ([`aloft_oci::name::is_valid_repository`]).
fn validate_repository(repo: &str) -> Result<(), String> {
    if name::is_valid_repository(repo) {
        Ok(())
    } else {
        Err(format!(
            "repository `{repo}` must be lowercase letters and digits separated by `/`, `.`, `_`, `__` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "127.0.0.1:5000";
    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> Result<Reference, ImageError> {
        Reference::parse(s, REG, "personal")
    }

    #[test]
    fn full_reference() {
        let r = p("127.0.0.1:5000/acme/hello:v1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "acme/hello");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "127.0.0.1:5000/acme/hello:v1");
        let r = p("registry.example.com/a/b/c").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("registry.example.com", "a/b/c")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = p("localhost/hello:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "hello")
        );
    }

    #[test]
    fn shorthand_is_the_orgs_repository() {
        let r = p("hello:v2").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/personal/hello:v2");
        let r = p("hello").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/personal/hello:latest");
        // several components without a host: the default registry, no org added
        let r = p("other/hello:v1").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/other/hello:v1");
        // no org known: a clear error
        let e = Reference::parse("hello", REG, "").unwrap_err().to_string();
        assert!(e.contains("names no org"), "{e}");
    }

    #[test]
    fn digests() {
        let r = p(&format!("127.0.0.1:5000/acme/hello@{D}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        let r = p(&format!("hello:v1@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(
            r.to_string(),
            format!("127.0.0.1:5000/personal/hello:v1@{D}")
        );
    }

    #[test]
    fn bad_references() {
        for bad in [
            "",
            "Hello:v1",
            "hello:-v1",
            "hello@sha256:abc",
            "hello@md5:0123456789abcdef0123456789abcdef",
            &format!("hello@{}", D.to_uppercase()),
            "a//b",
            "hello world",
            "127.0.0.1:5000/acme/he..llo",
            "acme/hello:v1:v2/x",
        ] {
            let e = p(bad);
            assert!(e.is_err(), "{bad:?} parsed as {e:?}");
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains("invalid image reference"), "{msg}");
        }
    }
}
