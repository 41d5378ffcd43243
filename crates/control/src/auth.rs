//! API tokens (`aloft_` + 40 hex characters; only their SHA-256 is stored), bearer parsing, and
//! the names orgs and apps may have.

use aloft_types::ApiError;
use aloft_types::ids::random_hex;
use sha2::{Digest, Sha256};

/// What every API token starts with, so that a leaked one is easy to recognise.
pub(crate) const TOKEN_PREFIX: &str = "aloft_";

/// A new random API token.
pub(crate) fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(20))
}

/// The form a token is stored in: its SHA-256, as lowercase hex.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An org API token as its caller presented it. The control plane forwards it to agents for the
/// registry pulls a request triggers; it is never stored or logged (`Debug` shows no secret).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiToken(String);

impl ApiToken {
    pub fn new(token: &str) -> Self {
        Self(token.to_string())
    }

    /// The token itself, to send on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// The token in an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer(header: Option<&str>) -> Result<&str, ApiError> {
    let Some(value) = header else {
        return Err(ApiError::Unauthorized(
            "no API token: send `Authorization: Bearer <token>`. `aloft dev up` writes a token for the org \
             `personal` to <data-dir>/token; an operator can create one with POST /internal/v1/orgs"
                .into(),
        ));
    };
    aloft_http::bearer_token(value).ok_or_else(|| {
        ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`; get a token from `aloft dev up` \
             (<data-dir>/token) or from an operator"
                .into(),
        )
    })
}

/// The answer for a token that is not known.
pub(crate) fn invalid_token() -> ApiError {
    ApiError::Unauthorized(
        "the API token is not valid: it may have been mistyped or revoked; use the token in \
         <data-dir>/token written by `aloft dev up`, or ask an operator for a new one"
            .into(),
    )
}

pub(crate) use aloft_types::ids::is_dns_label;

/// Whether `name` can name a token: 1-64 printable ASCII characters (it is sent to agents in the
/// `x-aloft-actor` header).
pub(crate) fn is_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_prefix_and_40_hex_chars() {
        let t = new_token();
        let hex = t.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(hex.len(), 40);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new_token(), t);
    }

    #[test]
    fn hashes_are_sha256_hex_and_never_the_token() {
        let h = hash_token("aloft_abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_token("aloft_abc"));
        assert_ne!(h, hash_token("aloft_abd"));
        assert!(!h.contains("abc"));
        // A known vector: sha256("abc").
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some("Bearer aloft_x")).unwrap(), "aloft_x");
        assert_eq!(bearer(Some("bearer  aloft_x ")).unwrap(), "aloft_x");
        assert_eq!(bearer(None).unwrap_err().status(), 401);
        assert_eq!(bearer(Some("Basic abc")).unwrap_err().status(), 401);
        assert_eq!(bearer(Some("Bearer ")).unwrap_err().status(), 401);
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "hello", "my-app-2", "0day", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Hello",
            "my_app",
            "a.b",
            &"a".repeat(64),
            "ü",
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn token_names_fit_in_a_header() {
        assert!(is_token_name("aloft dev up"));
        assert!(is_token_name("ci-bot@example.com"));
        assert!(!is_token_name(""));
        assert!(!is_token_name("tab\there"));
        assert!(!is_token_name("émile"));
        assert!(!is_token_name(&"x".repeat(65)));
    }
}
