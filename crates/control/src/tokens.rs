//! API tokens in the app layer: who a presented token speaks for (an unknown, revoked or expired
//! token, or a deploy token whose app is gone, is 401 on the request that presents it: nothing is
//! cached), what its scope lets it do (a deploy token reaches its one app; anything else of the org
//! is 404 like a missing app, and creating apps or tokens is 403), and `POST/GET /v1/tokens`,
//! `DELETE /v1/tokens/{id}` and the internal check other services use (the registry).
//!
//! No state of its own: every check reads the store.

use crate::ControlPlane;
use crate::auth::{self, ApiToken};
use crate::error::ControlPlaneError;
use crate::store::{Caller, Scope, TokenRecord};
use aloft_types::ApiError;
use aloft_types::api::{
    CreateTokenRequest, CreatedToken, ListTokensQuery, TokenInfo, TokenScope, VerifyTokenResponse,
};
use aloft_types::ids::random_hex;
use aloft_types::time::{now_ms, rfc3339};

/// The longest expiry a token may be given: 20 years (flyctl's default for deploy tokens).
pub(crate) const MAX_EXPIRY_SECS: u64 = 20 * 365 * 24 * 3600;

impl Caller {
    /// Whether the caller's token reaches the app with id `app_id` of its org.
    pub(crate) fn reaches(&self, app_id: &str) -> bool {
        match &self.scope {
            Scope::Org => true,
            Scope::App { id, .. } => id == app_id,
        }
    }

    /// 403 unless the caller's token is org-wide; `what` says what was refused ("create apps").
    pub(crate) fn require_org_wide(&self, what: &str) -> Result<(), ApiError> {
        match &self.scope {
            Scope::Org => Ok(()),
            Scope::App { name, .. } => Err(ApiError::Forbidden(format!(
                "this is a deploy token for app `{name}`: it cannot {what}; use an org token \
                 (`aloft tokens create org`, made with an org token)"
            ))),
        }
    }
}

fn info(t: &TokenRecord, now: i64) -> TokenInfo {
    TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        scope: if t.app_id.is_some() {
            TokenScope::Deploy
        } else {
            TokenScope::Org
        },
        app: t.app_name.clone(),
        created_at: rfc3339(t.created_at),
        expires_at: t.expires_at.map(rfc3339),
        expired: t.expires_at.is_some_and(|e| e <= now),
    }
}

/// Why a stored token does not speak for anyone now, if it does not.
fn refusal(t: &TokenRecord, now: i64) -> Option<ApiError> {
    let refused = |why: String| {
        Some(ApiError::Unauthorized(format!(
            "the API token `{}` (id {}) {why}; create a new one with `aloft tokens create` \
             (using an org token) and use it instead",
            t.name, t.id
        )))
    };
    if t.revoked_at.is_some() {
        return refused("was revoked".into());
    }
    if let Some(expires_at) = t.expires_at.filter(|e| *e <= now) {
        return refused(format!("expired at {}", rfc3339(expires_at)));
    }
    if t.app_id.is_some() && t.app_name.is_none() {
        return refused("was a deploy token for an app that has been deleted".into());
    }
    None
}

impl ControlPlane {
    /// The caller `token` speaks for now, or the 401 that says why it does not.
    pub(crate) async fn caller_of_token(&self, token: &str) -> Result<Caller, ApiError> {
        let Some((org, t)) = self
            .inner
            .store
            .token_by_hash(auth::hash_token(token))
            .await?
        else {
            return Err(auth::invalid_token());
        };
        if let Some(refused) = refusal(&t, now_ms()) {
            return Err(refused);
        }
        let scope = match (t.app_id, t.app_name) {
            (None, _) => Scope::Org,
            (Some(id), Some(name)) => Scope::App { id, name },
            // A deploy token whose app is gone never widens to the org (`refusal` says why).
            (Some(_), None) => return Err(auth::invalid_token()),
        };
        Ok(Caller {
            org,
            token_name: t.name,
            scope,
            token: ApiToken::new(token),
        })
    }

    /// A new org-wide API token that never expires (returned once; stored hashed): for
    /// operators (`POST /internal/v1/orgs`) and `aloft dev up`.
    pub async fn create_token(&self, org: &str, name: &str) -> Result<String, ControlPlaneError> {
        if !auth::is_token_name(name) {
            return Err(ControlPlaneError::InvalidTokenName(name.to_string()));
        }
        if self.inner.store.org(org).await?.is_none() {
            return Err(ControlPlaneError::UnknownOrg(org.to_string()));
        }
        let token = auth::new_token();
        let record = TokenRecord {
            id: random_hex(8),
            org_slug: org.to_string(),
            name: name.to_string(),
            app_id: None,
            app_name: None,
            created_at: now_ms(),
            expires_at: None,
            revoked_at: None,
        };
        self.inner
            .store
            .insert_token(auth::hash_token(&token), record)
            .await?;
        Ok(token)
    }

    /// `POST /v1/tokens`: a new token of the caller's org, org-wide or for one app, shown once.
    pub(crate) async fn create_scoped_token(
        &self,
        caller: &Caller,
        body: &[u8],
    ) -> Result<CreatedToken, ApiError> {
        caller.require_org_wide("create tokens")?;
        let req: CreateTokenRequest = ApiError::parse_json(body)?;
        // An empty `app` is no app, as a client leaving the field blank means.
        let app = match (req.scope, req.app.as_deref().filter(|a| !a.is_empty())) {
            (TokenScope::Deploy, Some(app)) => Some(self.app_of(caller, app).await?),
            (TokenScope::Deploy, None) => {
                return Err(ApiError::invalid(
                    "app",
                    "a deploy token is for one app: name it in `app` (`aloft tokens create deploy -a APP`)",
                ));
            }
            (TokenScope::Org, Some(_)) => {
                return Err(ApiError::invalid(
                    "app",
                    "an org token reaches every app of the org: leave `app` out, or ask for \
                     `\"scope\": \"deploy\"`",
                ));
            }
            (TokenScope::Org, None) => None,
        };
        let name = req.name.unwrap_or_else(|| match &app {
            Some(app) => format!("deploy token for {}", app.name),
            None => "org token".into(),
        });
        if !auth::is_token_name(&name) {
            return Err(ApiError::invalid(
                "name",
                "a token name is 1-64 printable ASCII characters, e.g. \"ci deploy\"",
            ));
        }
        let now = now_ms();
        let expires_at = match req.expiry_secs {
            None => None,
            Some(secs) if (1..=MAX_EXPIRY_SECS).contains(&secs) => {
                Some(now + i64::try_from(secs * 1000).unwrap_or(i64::MAX))
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "expiry_secs",
                    format!(
                        "expiry_secs must be between 1 and {MAX_EXPIRY_SECS} (20 years), e.g. 2592000 for 720h"
                    ),
                ));
            }
        };
        let token = auth::new_token();
        let record = TokenRecord {
            id: random_hex(8),
            org_slug: caller.org.slug.clone(),
            name,
            app_id: app.as_ref().map(|a| a.id.clone()),
            app_name: app.map(|a| a.name),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        self.inner
            .store
            .insert_token(auth::hash_token(&token), record.clone())
            .await?;
        Ok(CreatedToken {
            info: info(&record, now),
            token,
        })
    }

    /// `GET /v1/tokens[?app=]`: the org's tokens that are not revoked (never the secrets).
    pub(crate) async fn list_tokens(
        &self,
        caller: &Caller,
        query: &ListTokensQuery,
    ) -> Result<Vec<TokenInfo>, ApiError> {
        caller.require_org_wide("list tokens")?;
        let app_id = match &query.app {
            Some(app) => Some(self.app_of(caller, app).await?.id),
            None => None,
        };
        let now = now_ms();
        Ok(self
            .inner
            .store
            .tokens_of_org(&caller.org.slug)
            .await?
            .iter()
            .filter(|t| app_id.is_none() || t.app_id == app_id)
            .map(|t| info(t, now))
            .collect())
    }

    /// `DELETE /v1/tokens/{id}`: revokes one of the org's tokens; it stops working at once.
    pub(crate) async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        caller.require_org_wide("revoke tokens")?;
        if self
            .inner
            .store
            .revoke_token(&caller.org.slug, id, now_ms())
            .await?
        {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "token `{id}` not found (or already revoked); list the org's tokens with \
                 `aloft tokens list`"
            )))
        }
    }

    /// The org (and, for a deploy token, the app) a token speaks for now; `None` when it is
    /// unknown, revoked or expired. For services that check tokens themselves (the registry).
    pub async fn verify_token(&self, token: &str) -> Option<VerifyTokenResponse> {
        match self.caller_of_token(token).await {
            Ok(caller) => Some(VerifyTokenResponse {
                org: caller.org.slug,
                app: match caller.scope {
                    Scope::Org => None,
                    Scope::App { name, .. } => Some(name),
                },
            }),
            Err(ApiError::Unauthorized(_)) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot check an API token");
                None
            }
        }
    }

    /// The org a token speaks for, if it is valid now (whatever its scope).
    pub async fn org_of_token(&self, token: &str) -> Option<String> {
        self.verify_token(token).await.map(|v| v.org)
    }
}

#[cfg(test)]
mod tests;
