//! Content digests: `sha256:<64 lowercase hex>`, the only algorithm aloft accepts, as a
//! validated [`Digest`] (safe as a path component) or checked in place with [`hex_of`].

use sha2::{Digest as _, Sha256};

/// The one supported algorithm's prefix.
const PREFIX: &str = "sha256:";

/// A `sha256:<64 lowercase hex>` digest, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest aloft accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestProblem {
    /// No `<algorithm>:` prefix at all.
    NoAlgorithm,
    /// An algorithm other than sha256.
    NotSha256,
    /// `sha256:` followed by something other than 64 lowercase hex digits.
    BadEncoding,
}

/// A string that is not a digest aloft accepts. Its `Display` is the registry's sentence;
/// [`DigestError::detail`] is the image pipeline's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid digest: {}", self.why())]
pub struct DigestError {
    /// The text that was given.
    pub text: String,
    /// What is wrong with it.
    pub problem: DigestProblem,
}

impl DigestError {
    fn why(&self) -> &'static str {
        match self.problem {
            DigestProblem::NoAlgorithm => "expected `sha256:<64 hex digits>`",
            DigestProblem::NotSha256 => {
                "this registry supports only sha256 digests (`sha256:<64 hex digits>`)"
            }
            DigestProblem::BadEncoding => "a sha256 digest has 64 lowercase hex digits",
        }
    }

    /// The sentence the image pipeline shows (inside its own error's context).
    pub fn detail(&self) -> String {
        let text = &self.text;
        match self.problem {
            DigestProblem::NoAlgorithm | DigestProblem::NotSha256 => {
                format!("digest `{text}` is not a sha256 digest (only sha256 is supported)")
            }
            DigestProblem::BadEncoding => {
                format!("digest `{text}` must be `sha256:` followed by 64 lowercase hex digits")
            }
        }
    }
}

/// The hex part of a `sha256:` digest, or why it is not one.
pub fn hex_of(text: &str) -> Result<&str, DigestError> {
    let fail = |problem| DigestError {
        text: text.to_string(),
        problem,
    };
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return Err(fail(DigestProblem::NoAlgorithm));
    };
    if algorithm != "sha256" {
        return Err(fail(DigestProblem::NotSha256));
    }
    if encoded.len() != 64
        || !encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(fail(DigestProblem::BadEncoding));
    }
    Ok(encoded)
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        hex_of(text)?;
        Ok(Digest(text.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hash(Sha256::digest(bytes).into())
    }

    /// The digest of everything fed to `hasher`.
    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest::from_hash(hasher.finalize().into())
    }

    /// The digest whose sha256 is `hash`.
    pub fn from_hash(hash: [u8; 32]) -> Digest {
        Digest(format!("{PREFIX}{}", hex::encode(hash)))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:<hex>`, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = Digest::of(b"").into_string();
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hex_of(&d).unwrap().len(), 64);
        assert!(hex_of("sha512:00").is_err());
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of(&d.to_uppercase()).is_err());
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
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn both_sentences_name_the_digest() {
        let e = Digest::parse("sha512:00").unwrap_err();
        assert!(e.to_string().contains("supports only sha256"), "{e}");
        assert!(e.detail().contains("is not a sha256 digest"));
        let e = Digest::parse("sha256:AB").unwrap_err();
        assert!(e.detail().contains("64 lowercase hex digits"));
    }
}
