//! Errors: [`RegistryError`] is what every operation returns; [`ErrorCode`] names the answers a
//! client gets, in the OCI distribution spec's vocabulary. The mapping to HTTP status codes and
//! to the spec's JSON body (`{"errors":[{"code","message","detail"}]}`) happens at the edge
//! (`http.rs`). Every message says what to do next.

use std::path::PathBuf;

/// The error codes a client can receive. Most are the spec's own; a few variants share a spec
/// code but differ in HTTP status (noted on each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN` (404): the blob is not in this repository.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID` (400): the upload body or its framing is wrong.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_INVALID` with status 416: a chunk does not start where the upload ends.
    UploadOutOfOrder,
    /// `BLOB_UPLOAD_UNKNOWN` (404): no such upload session (finished, cancelled or expired).
    BlobUploadUnknown,
    /// `DIGEST_INVALID` (400): the content does not match its digest, or the digest is malformed.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN` (400): a manifest references a blob or manifest the repository lacks.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID` (400): the manifest cannot be parsed or is not a supported type.
    ManifestInvalid,
    /// `MANIFEST_INVALID` with status 413: the manifest is larger than this registry accepts.
    ManifestTooLarge,
    /// `MANIFEST_UNKNOWN` (404): no manifest with that tag or digest.
    ManifestUnknown,
    /// `NAME_INVALID` (400): the repository name is outside the grammar or not `<org>/<name>`.
    NameInvalid,
    /// `NAME_UNKNOWN` (404): the repository does not exist.
    NameUnknown,
    /// `TAG_INVALID` (400): the tag is outside the grammar.
    TagInvalid,
    /// `SIZE_INVALID` (400): a length or range header does not match the content.
    SizeInvalid,
    /// `PAGINATION_NUMBER_INVALID` (400): `n` is not a number.
    PaginationNumberInvalid,
    /// `UNAUTHORIZED` (401): no credentials, or credentials no org owns.
    Unauthorized,
    /// `DENIED` (403): the credentials are valid but do not grant this repository.
    Denied,
    /// `UNSUPPORTED` (405): the operation is not supported here.
    Unsupported,
    /// `UNAVAILABLE` (503): the upstream registry of a cache cannot be reached.
    Unavailable,
    /// `UNKNOWN` (500): the registry itself failed (disk, task); retrying may help.
    Internal,
}

impl ErrorCode {
    /// The code string of the spec's error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid | ErrorCode::UploadOutOfOrder => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid | ErrorCode::ManifestTooLarge => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "UNKNOWN",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => 404,
            ErrorCode::UploadOutOfOrder => 416,
            ErrorCode::ManifestTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::PaginationNumberInvalid => 400,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An answer to the caller: a spec error code and a sentence that says what to do.
    #[error("{code}: {message}")]
    Api { code: ErrorCode, message: String },
    /// A file or directory of the data dir could not be read or written.
    #[error(
        "cannot {op} {path}: {source}; check that the data dir is writable and the disk not full"
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The upstream of a cache did not answer (connection refused, reset, timeouts, 5xx), even
    /// after retrying.
    #[error(
        "the upstream registry {url} is unavailable after {attempts} attempts ({last}); retry later, and check that the upstream runs and this host can reach it"
    )]
    UpstreamUnavailable {
        url: String,
        attempts: u32,
        last: String,
    },
    /// The upstream of a cache answered with an error (it refused a push, denied access, ...).
    #[error("the upstream registry {url} refused: {status} {code}: {message}")]
    UpstreamRefused {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The configuration given to [`crate::Registry::open`] cannot work.
    #[error("invalid registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    pub(crate) fn api(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError::Api {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The spec code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::Api { code, .. } => *code,
            RegistryError::UpstreamUnavailable { .. } => ErrorCode::Unavailable,
            RegistryError::UpstreamRefused { .. } | RegistryError::Io { .. } => ErrorCode::Internal,
            RegistryError::Config(_) => ErrorCode::Internal,
        }
    }
}

impl From<aloft_oci::DigestError> for RegistryError {
    fn from(e: aloft_oci::DigestError) -> Self {
        RegistryError::api(ErrorCode::DigestInvalid, e.to_string())
    }
}

impl From<aloft_oci::NameError> for RegistryError {
    fn from(e: aloft_oci::NameError) -> Self {
        match e {
            aloft_oci::NameError::Repository(m) => RegistryError::api(ErrorCode::NameInvalid, m),
            aloft_oci::NameError::Tag(m) => RegistryError::api(ErrorCode::TagInvalid, m),
            aloft_oci::NameError::Digest(e) => e.into(),
        }
    }
}

impl From<aloft_oci::refs::RefsError> for RegistryError {
    fn from(e: aloft_oci::refs::RefsError) -> Self {
        let message = match e {
            aloft_oci::refs::RefsError::Invalid(m) => m,
            aloft_oci::refs::RefsError::BadDigest { what, error } => format!(
                "a {what} descriptor has a bad digest: {}",
                RegistryError::from(error)
            ),
        };
        RegistryError::api(ErrorCode::ManifestInvalid, message)
    }
}

/// Shorthand used throughout the crate.
pub(crate) type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_oci::{Digest, ManifestRef, RepoName, refs};

    #[test]
    fn shared_grammar_errors_keep_their_spec_codes() {
        let code = |e: RegistryError| e.code();
        for bad in ["Acme/app", "app", "acme//app"] {
            let err = RepoName::parse(bad).expect_err(bad);
            assert_eq!(code(err.into()), ErrorCode::NameInvalid, "{bad}");
        }
        let err = ManifestRef::parse("-bad").expect_err("tag");
        assert_eq!(code(err.into()), ErrorCode::TagInvalid);
        let err = ManifestRef::parse("sha256:abc").expect_err("digest");
        assert_eq!(code(err.into()), ErrorCode::DigestInvalid);
        let err = Digest::parse("sha512:00").expect_err("digest");
        assert_eq!(code(err.into()), ErrorCode::DigestInvalid);
        let body = br#"{"schemaVersion": 2, "config": {"digest": "md5:abc"}, "layers": []}"#;
        let err = RegistryError::from(refs::parse(None, body).expect_err("bad digest"));
        assert_eq!(err.code(), ErrorCode::ManifestInvalid);
        assert!(
            err.to_string()
                .contains("a config descriptor has a bad digest: DIGEST_INVALID: `md5:abc`"),
            "{err}"
        );
    }
}
