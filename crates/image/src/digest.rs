//! Content digests (`sha256:<64 lowercase hex>`, the only algorithm aloft accepts).

use sha2::{Digest, Sha256};

/// The hex part of a `sha256:` digest, or why it is not one.
pub(crate) fn hex_of(digest: &str) -> Result<&str, String> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        format!("digest `{digest}` is not a sha256 digest (only sha256 is supported)")
    })?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(format!(
            "digest `{digest}` must be `sha256:` followed by 64 lowercase hex digits"
        ))
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn of_bytes(bytes: &[u8]) -> String {
    finish(Sha256::digest(bytes).into())
}

/// `sha256:<hex>` of a finished hash.
pub(crate) fn finish(hash: [u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = of_bytes(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hex_of(&d).unwrap().len(), 64);
        assert!(hex_of("sha512:00").is_err());
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of(&d.to_uppercase()).is_err());
    }
}
