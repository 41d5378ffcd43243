//! The API's error type, independent of HTTP: each variant maps to one status code at the edge
//! (`ApiError::status`), and every message says what to do next.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The JSON body of every error response: `{"error": "...", "status": "..."}` as in the
/// reference, plus the field and allowed values when a config is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
    /// A short machine-readable code for the kind of error, e.g. `not_found`,
    /// `insufficient_capacity` or `name_taken` (the reference's clients read it).
    #[serde(default)]
    pub status: String,
    /// The offending field, as a path (`config.guest.memory_mb`), for 422 responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The values the field accepts, when there is a short list of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

impl ErrorBody {
    /// A body with no field: `status` is the code ([`ApiError::code`] for API errors), `error`
    /// the sentence.
    pub fn new(status: &str, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            status: status.into(),
            field: None,
            allowed: Vec::new(),
        }
    }
}

/// An error the API returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or a token that is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token is valid but its scope does not allow this (a deploy token creating an
    /// app or a token).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such object (or one the token's org may not see).
    #[error("{0}")]
    NotFound(String),
    /// 408: a wait ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// 409: a lease is held by someone else, or the object already exists.
    #[error("{0}")]
    Conflict(String),
    /// 409: an app name is taken (app names are global; status `name_taken`, as the
    /// reference's clients recognise it).
    #[error("{0}")]
    NameTaken(String),
    /// 412: the machine is not in a state that allows the operation.
    #[error("{0}")]
    Precondition(String),
    /// 413: the body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 422: the request was read but a value is not allowed.
    #[error("{message}")]
    Invalid {
        message: String,
        field: String,
        allowed: Vec<String>,
    },
    /// 503: a host or backend is not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// 503: no host (of the region, or the one asked) has room for the machine (status
    /// `insufficient_capacity`, as in the reference).
    #[error("{0}")]
    NoCapacity(String),
    /// 500: a bug or a failure of the host.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 naming the field and the allowed values.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: field.into(),
            allowed: Vec::new(),
        }
    }

    /// A 422 naming the field and listing what it accepts.
    pub fn invalid_choice(
        field: impl Into<String>,
        got: impl std::fmt::Display,
        allowed: &[&str],
    ) -> Self {
        let field = field.into();
        Self::Invalid {
            message: format!(
                "{field}: `{got}` is not allowed; use one of: {}",
                allowed.join(", ")
            ),
            field,
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The HTTP status code this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Timeout(_) => 408,
            Self::Conflict(_) | Self::NameTaken(_) => 409,
            Self::Precondition(_) => 412,
            Self::TooLarge(_) => 413,
            Self::Invalid { .. } => 422,
            Self::Unavailable(_) | Self::NoCapacity(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// The short machine-readable code of the body's `status` field: the reference's where it
    /// has one (`insufficient_capacity`, `name_taken`), else the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Timeout(_) => "timeout",
            Self::Conflict(_) => "conflict",
            Self::NameTaken(_) => "name_taken",
            Self::Precondition(_) => "failed_precondition",
            Self::TooLarge(_) => "too_large",
            Self::Invalid { .. } => "invalid_value",
            Self::Unavailable(_) => "unavailable",
            Self::NoCapacity(_) => "insufficient_capacity",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body for this error.
    pub fn body(&self) -> ErrorBody {
        match self {
            Self::Invalid {
                message,
                field,
                allowed,
            } => ErrorBody {
                error: message.clone(),
                status: self.code().into(),
                field: Some(field.clone()),
                allowed: allowed.clone(),
            },
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }

    /// Rebuilds an error from a status code and body (what a client of the API receives).
    pub fn from_response(status: u16, body: ErrorBody) -> Self {
        let msg = body.error;
        match (status, body.status.as_str()) {
            (409, "name_taken") => return Self::NameTaken(msg),
            (503, "insufficient_capacity") => return Self::NoCapacity(msg),
            _ => {}
        }
        match status {
            400 => Self::BadRequest(msg),
            401 => Self::Unauthorized(msg),
            403 => Self::Forbidden(msg),
            404 => Self::NotFound(msg),
            408 => Self::Timeout(msg),
            409 => Self::Conflict(msg),
            412 => Self::Precondition(msg),
            413 => Self::TooLarge(msg),
            422 => Self::Invalid {
                message: msg,
                field: body.field.unwrap_or_default(),
                allowed: body.allowed,
            },
            503 => Self::Unavailable(msg),
            _ => Self::Internal(msg),
        }
    }

    /// Reads a JSON request body: syntax errors are 400, values of the wrong type or not allowed
    /// are 422 naming the field path (`config.guest.cpu_kind`). A number written with a zero
    /// fraction (`2.0`) is the integer it equals, as JSON Schema counts it; a top-level array
    /// (serde's positional form of a struct) is refused: every body is an object.
    pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::BadRequest(format!(
                "the request body is not valid JSON: {e}; send a JSON object"
            ))
        })?;
        if value.is_array() {
            return Err(ApiError::invalid(
                "body",
                "the body is a JSON array; send a JSON object",
            ));
        }
        whole_numbers_as_integers(&mut value);
        serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            let message = strip_position(&err.into_inner().to_string());
            ApiError::Invalid {
                allowed: allowed_from_serde(&message),
                message: format!("{field}: {message}"),
                field,
            }
        })
    }
}

/// Every float in `value` with no fraction that an `i64` or `u64` holds, as that integer.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
            {
                if (i64::MIN as f64..i64::MAX as f64).contains(&f) {
                    *value = Value::from(f as i64);
                } else if (0.0..u64::MAX as f64).contains(&f) {
                    *value = Value::from(f as u64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde's "expected one of `a`, `b`" (or "expected `a` or `b`") list, as allowed values.
fn allowed_from_serde(msg: &str) -> Vec<String> {
    let Some(i) = msg.find("expected ") else {
        return Vec::new();
    };
    let list = &msg[i + "expected ".len()..];
    let list = list.strip_prefix("one of ").unwrap_or(list);
    if !list.starts_with('`') {
        return Vec::new();
    }
    list.split(", ")
        .flat_map(|s| s.split(" or "))
        .map(|s| s.trim_matches(|c| c == '`' || c == ' ').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `2.0` is the integer 2 (as JSON Schema counts it); an array is not a struct's body;
    /// broken JSON is a 400 and a wrong type a 422 naming the field.
    #[test]
    fn bodies_are_objects_and_whole_floats_are_integers() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            count: Option<u64>,
            ratio: Option<f64>,
        }
        let b: Body = ApiError::parse_json(br#"{"count": 2516.0, "ratio": 2}"#).unwrap();
        assert_eq!((b.count, b.ratio), (Some(2516), Some(2.0)));
        let e = ApiError::parse_json::<Body>(b"[null, null]").unwrap_err();
        assert_eq!((e.status(), e.body().field.as_deref()), (422, Some("body")));
        let e = ApiError::parse_json::<Body>(br#"{"count": 1.5}"#).unwrap_err();
        assert_eq!(
            (e.status(), e.body().field.as_deref()),
            (422, Some("count"))
        );
        assert_eq!(
            ApiError::parse_json::<Body>(b"{").unwrap_err().status(),
            400
        );
        assert_eq!(ApiError::parse_json::<Body>(b"").unwrap_err().status(), 400);
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        kind: Kind,
        n: u32,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Shared,
        Performance,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[test]
    fn every_error_body_carries_a_status_code_that_survives_the_trip() {
        let all = [
            ApiError::BadRequest("m".into()),
            ApiError::Unauthorized("m".into()),
            ApiError::Forbidden("m".into()),
            ApiError::NotFound("m".into()),
            ApiError::Timeout("m".into()),
            ApiError::Conflict("m".into()),
            ApiError::NameTaken("m".into()),
            ApiError::Precondition("m".into()),
            ApiError::TooLarge("m".into()),
            ApiError::invalid("f", "m"),
            ApiError::Unavailable("m".into()),
            ApiError::NoCapacity("m".into()),
            ApiError::Internal("m".into()),
        ];
        let mut codes = std::collections::BTreeSet::new();
        for e in all {
            let json = serde_json::to_value(e.body()).unwrap();
            assert_eq!(json["status"], e.code(), "{json}");
            assert!(codes.insert(e.code()), "{} twice", e.code());
            let body: ErrorBody = serde_json::from_value(json).unwrap();
            assert_eq!(ApiError::from_response(e.status(), body), e);
        }
        // The reference's codes, which its clients read (fly-go's flaps_error.go).
        assert_eq!(
            ApiError::NoCapacity("m".into()).code(),
            "insufficient_capacity"
        );
        assert_eq!(ApiError::NameTaken("m".into()).code(), "name_taken");
        // A body without a status (an older server) still reads.
        let body: ErrorBody = serde_json::from_str(r#"{"error":"full"}"#).unwrap();
        assert_eq!(
            ApiError::from_response(503, body),
            ApiError::Unavailable("full".into())
        );
    }

    #[test]
    fn syntax_errors_are_400() {
        let e = ApiError::parse_json::<Outer>(b"{nope").unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn data_errors_name_the_field_and_allowed_values() {
        let e = ApiError::parse_json::<Outer>(
            br#"{"items":[{"kind":"shared","n":1},{"kind":"big","n":1}]}"#,
        )
        .unwrap_err();
        let b = e.body();
        assert_eq!(e.status(), 422);
        assert_eq!(b.field.as_deref(), Some("items[1].kind"), "{b:?}");
        assert_eq!(b.allowed, vec!["shared", "performance"]);

        let e =
            ApiError::parse_json::<Outer>(br#"{"items":[{"kind":"shared","n":"x"}]}"#).unwrap_err();
        assert_eq!(e.body().field.as_deref(), Some("items[0].n"));

        let e = ApiError::parse_json::<Outer>(br#"{"items":[{"kind":"shared","n":1,"typo":2}]}"#)
            .unwrap_err();
        assert_eq!(
            e.body().field.as_deref(),
            Some("items[0].typo"),
            "{:?}",
            e.body()
        );
    }
}
