//! The spec's grammars, matched by hand: repository names, tags and digests. Values of these
//! types are valid by construction, so storage code can use them as path components.

use crate::error::{ErrorCode, RegistryError, Result};
use sha2::{Digest as _, Sha256};

/// Longest repository name accepted (the reference registry's limit).
const MAX_NAME_LEN: usize = 255;
/// Longest tag the spec allows.
const MAX_TAG_LEN: usize = 128;

/// A repository name, `<org>/<name>[/<more>...]`, matching the spec's grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RepoName(String);

impl RepoName {
    pub(crate) fn parse(name: &str) -> Result<RepoName> {
        if name.len() > MAX_NAME_LEN || !name.split('/').all(is_name_component) {
            return Err(RegistryError::api(
                ErrorCode::NameInvalid,
                format!(
                    "`{name}` is not a valid repository name: use lowercase letters and digits, \
                     separated by `.`, `_`, `__` or dashes, in `/`-separated components \
                     (at most {MAX_NAME_LEN} characters)"
                ),
            ));
        }
        if !name.contains('/') {
            return Err(RegistryError::api(
                ErrorCode::NameInvalid,
                format!(
                    "`{name}` has no org: repositories are named `<org>/<name>`, e.g. `myorg/{name}`"
                ),
            ));
        }
        Ok(RepoName(name.to_string()))
    }

    /// The org that owns the repository: the first path component.
    pub(crate) fn org(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `org` can own repositories: it must be a single name component.
pub(crate) fn is_valid_org(org: &str) -> bool {
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
pub(crate) fn is_valid_tag(tag: &str) -> bool {
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

/// A `sha256:<64 lowercase hex>` digest, the only algorithm this registry stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest(String);

impl Digest {
    pub(crate) fn parse(text: &str) -> Result<Digest> {
        let invalid = |why: &str| {
            RegistryError::api(
                ErrorCode::DigestInvalid,
                format!("`{text}` is not a valid digest: {why}"),
            )
        };
        let Some((algorithm, encoded)) = text.split_once(':') else {
            return Err(invalid("expected `sha256:<64 hex digits>`"));
        };
        if algorithm != "sha256" {
            return Err(invalid(
                "this registry supports only sha256 digests (`sha256:<64 hex digits>`)",
            ));
        }
        if encoded.len() != 64
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("a sha256 digest has 64 lowercase hex digits"));
        }
        Ok(Digest(text.to_string()))
    }

    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The 64 hex digits.
    pub(crate) fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub(crate) fn parse(text: &str) -> Result<Reference> {
        if text.contains(':') {
            return Digest::parse(text).map(Reference::Digest);
        }
        if !is_valid_tag(text) {
            return Err(RegistryError::api(
                ErrorCode::TagInvalid,
                format!(
                    "`{text}` is not a valid tag: use up to {MAX_TAG_LEN} letters, digits, `_`, `.` \
                     and `-`, not starting with `.` or `-`"
                ),
            ));
        }
        Ok(Reference::Tag(text.to_string()))
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => f.write_str(digest.as_str()),
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
            assert_eq!(err.code(), ErrorCode::NameInvalid, "{bad}");
        }
        assert_eq!(
            RepoName::parse("app").expect_err("no org").code(),
            ErrorCode::NameInvalid
        );
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
    fn digests_are_sha256_lowercase_hex() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).expect("valid"), d);
        for bad in [
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:abc",
            "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:../../../../etc/passwd0000000000000000000000000000000000000000",
        ] {
            assert_eq!(
                Digest::parse(bad).expect_err(bad).code(),
                ErrorCode::DigestInvalid
            );
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("v1").expect("tag"),
            Reference::Tag("v1".into())
        );
        assert!(matches!(
            Reference::parse(Digest::of(b"x").as_str()),
            Ok(Reference::Digest(_))
        ));
        assert_eq!(
            Reference::parse("-bad").expect_err("tag").code(),
            ErrorCode::TagInvalid
        );
    }
}
