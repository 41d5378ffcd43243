//! Who is calling: org API tokens, presented as Basic auth (any username, the token as password)
//! or as a Bearer token. The bearer token the token endpoint hands out *is* the org token (see the
//! crate docs for why), so both forms resolve through [`TokenAuthority::org_of_token`] on every
//! request and a revoked token stops working at once.

use base64::Engine as _;
use http::HeaderMap;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Resolves an org API token to the org it belongs to. The control plane implements it
/// in-process; [`StaticTokens`] is a fixed table for tests and single-org setups.
#[async_trait::async_trait]
pub trait TokenAuthority: Send + Sync + 'static {
    /// The org that owns `token`, or `None` when the token is unknown or revoked.
    async fn org_of_token(&self, token: &str) -> Option<String>;
}

/// A fixed table of `token -> org`.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    tokens: HashMap<String, String>,
}

impl StaticTokens {
    /// A table from `(token, org)` pairs.
    pub fn new<T: Into<String>, O: Into<String>>(pairs: impl IntoIterator<Item = (T, O)>) -> Self {
        StaticTokens {
            tokens: pairs
                .into_iter()
                .map(|(t, o)| (t.into(), o.into()))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl TokenAuthority for StaticTokens {
    async fn org_of_token(&self, token: &str) -> Option<String> {
        self.tokens.get(token).cloned()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub org: String,
    /// The org token itself: forwarded to the upstream of a cache.
    pub token: String,
}

/// The token in an `Authorization` header: the password of Basic auth, or a Bearer token.
pub(crate) fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string()).filter(|t| !t.is_empty());
    }
    basic_password(scheme, rest)
}

/// The password of a Basic `Authorization` value (the token endpoint accepts only Basic).
pub(crate) fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    basic_password(scheme, rest.trim())
}

fn basic_password(scheme: &str, encoded: &str) -> Option<String> {
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    Some(password.to_string()).filter(|p| !p.is_empty())
}

/// `Basic` header value for `token` (used towards an upstream).
pub(crate) fn basic_header(token: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("aloft:{token}"));
    format!("Basic {encoded}")
}

/// `time` as RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn tokens_come_from_basic_or_bearer() {
        let basic = basic_header("tok");
        assert_eq!(presented_token(&headers(&basic)), Some("tok".into()));
        assert_eq!(basic_token(&headers(&basic)), Some("tok".into()));
        assert_eq!(presented_token(&headers("Bearer abc")), Some("abc".into()));
        assert_eq!(basic_token(&headers("Bearer abc")), None);
        assert_eq!(presented_token(&headers("Basic !!!")), None);
        assert_eq!(presented_token(&headers("Bearer ")), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "2024-02-29T12:34:56Z"
        );
    }
}
