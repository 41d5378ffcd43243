//! The distribution spec's grammars, matched by hand: repository names, tags, and what follows
//! `/manifests/` (a tag or a digest). [`RepoName`] and [`ManifestRef`] are valid by
//! construction, so storage code can use them as path components.

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (the reference registry's limit).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag the spec allows.
pub const MAX_TAG_LEN: usize = 128;

/// A name, tag or digest that does not follow the spec's grammar. `Display` is a sentence that
/// says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a repository name (or one without an org).
    #[error("{0}")]
    Repository(String),
    /// Not a tag.
    #[error("{0}")]
    Tag(String),
    /// Not a sha256 digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A repository name, `<org>/<name>[/<more>...]`, matching the spec's grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName(String);

impl RepoName {
    /// Parses `name`, which must also have an org (a first component and at least one more).
    pub fn parse(name: &str) -> Result<RepoName, NameError> {
        if !is_valid_repository(name) {
            return Err(NameError::Repository(format!(
                "`{name}` is not a valid repository name: use lowercase letters and digits, \
                 separated by `.`, `_`, `__` or dashes, in `/`-separated components \
                 (at most {MAX_NAME_LEN} characters)"
            )));
        }
        if !name.contains('/') {
            return Err(NameError::Repository(format!(
                "`{name}` has no org: repositories are named `<org>/<name>`, e.g. `myorg/{name}`"
            )));
        }
        Ok(RepoName(name.to_string()))
    }

    /// The org that owns the repository: the first path component.
    pub fn org(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `repo` is a repository name: at most [`MAX_NAME_LEN`] bytes of `/`-separated
/// components (one component is enough here; [`RepoName`] also asks for an org).
pub fn is_valid_repository(repo: &str) -> bool {
    repo.len() <= MAX_NAME_LEN && repo.split('/').all(is_name_component)
}

/// Whether `org` can own repositories: it must be a single name component.
pub fn is_valid_org(org: &str) -> bool {
    is_name_component(org)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: alphanumeric runs joined by one separator each.
fn is_name_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_TAG_LEN
        && (first.is_ascii_alphanumeric() || first == b'_')
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    /// A tag.
    Tag(String),
    /// A manifest digest.
    Digest(Digest),
}

impl ManifestRef {
    /// Parses a tag, or a digest when `text` holds a `:`.
    pub fn parse(text: &str) -> Result<ManifestRef, NameError> {
        if text.contains(':') {
            return Ok(ManifestRef::Digest(Digest::parse(text)?));
        }
        if !is_valid_tag(text) {
            return Err(NameError::Tag(format!(
                "`{text}` is not a valid tag: use up to {MAX_TAG_LEN} letters, digits, `_`, `.` \
                 and `-`, not starting with `.` or `-`"
            )));
        }
        Ok(ManifestRef::Tag(text.to_string()))
    }
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(tag) => f.write_str(tag),
            ManifestRef::Digest(digest) => f.write_str(digest.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for good in [
            "acme/app",
            "acme/a.b_c__d---e/f0",
            "a1/b",
            "org/x/y/z",
            "my-org/web",
        ] {
            assert!(RepoName::parse(good).is_ok(), "{good} should be valid");
        }
        for bad in [
            "Acme/app",
            "acme/app/",
            "/acme/app",
            "acme//app",
            "acme/-app",
            "acme/app-",
            "acme/a..b",
            "acme/a___b",
            "acme/a._b",
            "acme/a_-b",
            "acme/app:latest",
            "acme/ap p",
            "",
        ] {
            let err = RepoName::parse(bad).expect_err(bad);
            assert!(matches!(err, NameError::Repository(_)), "{bad}");
        }
        assert!(matches!(
            RepoName::parse("app").expect_err("no org"),
            NameError::Repository(_)
        ));
        assert!(RepoName::parse(&format!("acme/{}", "a".repeat(250))).is_ok());
        assert!(RepoName::parse(&format!("acme/{}", "a".repeat(251))).is_err());
        assert_eq!(RepoName::parse("acme/x/y").expect("valid").org(), "acme");
        assert!(is_valid_org("my-org") && !is_valid_org("../x") && !is_valid_org("a/b"));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(is_valid_tag(good), "{good} should be valid");
        }
        for bad in ["", ".x", "-x", "a/b", "a+b", "a:b", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            ManifestRef::parse("v1").expect("tag"),
            ManifestRef::Tag("v1".into())
        );
        assert!(matches!(
            ManifestRef::parse(Digest::of(b"x").as_str()),
            Ok(ManifestRef::Digest(_))
        ));
        assert!(matches!(
            ManifestRef::parse("-bad").expect_err("tag"),
            NameError::Tag(_)
        ));
    }
}
