//! Who is calling: API tokens, presented as Basic auth (any username, the token as password) or
//! as a Bearer token. The bearer token the token endpoint hands out *is* the API token (see the
//! crate docs for why), so both forms resolve through [`TokenAuthority::grant_of_token`] on every
//! request and a revoked or expired token stops working at once. A token is org-wide, or a deploy
//! token for one app: it reaches the repository `<org>/<app>` and those under it only.

use base64::Engine as _;
use http::HeaderMap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a valid token may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The org that owns the token: repositories `<org>/...`.
    pub org: String,
    /// For a deploy token, its one app: only `<org>/<app>` and `<org>/<app>/...`.
    pub app: Option<String>,
}

impl TokenGrant {
    /// An org-wide grant.
    pub fn org(org: impl Into<String>) -> Self {
        TokenGrant {
            org: org.into(),
            app: None,
        }
    }
}

/// Resolves an API token to what it may reach. The control plane implements it (in-process, or
/// through `POST /internal/v1/tokens/verify`); [`StaticTokens`] is a table for tests and
/// single-org setups.
#[async_trait::async_trait]
pub trait TokenAuthority: Send + Sync + 'static {
    /// What `token` may reach, or `None` when the token is unknown, revoked or expired. Asked on
    /// every request: implementations must not cache a positive answer.
    async fn grant_of_token(&self, token: &str) -> Option<TokenGrant>;
}

/// A table of `token -> grant`; tokens can be revoked (for tests of revocation).
#[derive(Debug, Default)]
pub struct StaticTokens {
    tokens: Mutex<HashMap<String, TokenGrant>>,
}

impl StaticTokens {
    /// A table of org-wide tokens from `(token, org)` pairs.
    pub fn new<T: Into<String>, O: Into<String>>(pairs: impl IntoIterator<Item = (T, O)>) -> Self {
        StaticTokens {
            tokens: Mutex::new(
                pairs
                    .into_iter()
                    .map(|(t, o)| (t.into(), TokenGrant::org(o)))
                    .collect(),
            ),
        }
    }

    /// Adds a deploy token of `org` for `app` (its repositories `<org>/<app>[/...]`).
    pub fn with_deploy_token(self, token: &str, org: &str, app: &str) -> Self {
        self.tokens.lock().insert(
            token.to_string(),
            TokenGrant {
                org: org.to_string(),
                app: Some(app.to_string()),
            },
        );
        self
    }

    /// Revokes `token`: the next request that presents it is refused.
    pub fn revoke(&self, token: &str) {
        self.tokens.lock().remove(token);
    }
}

#[async_trait::async_trait]
impl TokenAuthority for StaticTokens {
    async fn grant_of_token(&self, token: &str) -> Option<TokenGrant> {
        self.tokens.lock().get(token).cloned()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub org: String,
    /// The app of a deploy token (only its repositories); `None` for an org-wide token.
    pub app: Option<String>,
    /// The token itself: forwarded to the upstream of a cache.
    pub token: String,
}

impl Caller {
    /// Whether the caller's token reaches `repo` (`org/name[/...]`): its org's, and for a deploy
    /// token only `<org>/<app>` and the repositories under it.
    pub(crate) fn reaches(&self, repo: &str) -> bool {
        let Some(rest) = repo
            .strip_prefix(self.org.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        match &self.app {
            None => true,
            Some(app) => {
                rest == app
                    || rest
                        .strip_prefix(app.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
        }
    }
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
    fn deploy_tokens_reach_their_apps_repositories_only() {
        let org = Caller {
            org: "acme".into(),
            app: None,
            token: "t".into(),
        };
        let deploy = Caller {
            app: Some("web".into()),
            ..org.clone()
        };
        for repo in ["acme/web", "acme/web/cache"] {
            assert!(org.reaches(repo) && deploy.reaches(repo), "{repo}");
        }
        for repo in ["acme/api", "acme/webby", "acme/web-2", "acme/api/web"] {
            assert!(org.reaches(repo), "{repo}");
            assert!(!deploy.reaches(repo), "{repo}");
        }
        for repo in ["acmex/web", "other/web", "acme", "web"] {
            assert!(!org.reaches(repo) && !deploy.reaches(repo), "{repo}");
        }
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
