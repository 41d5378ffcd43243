//! Bodies of `/v1/apps/{app}/certificates`: the hostnames an app is served at and their
//! certificates, in the reference's shape (fly-go's `CertificateSummary`,
//! `CertificateDetailResponse` and friends), so `flaps` and `fly certs` read them unchanged.
//!
//! Words are the reference's: a certificate's `source` is `custom` (uploaded) or `fly` (managed:
//! issued by the platform); `status` is `active` when it is served. Flags aloft does not check
//! (DNS, ACME challenges, the ownership TXT record) are `false`, never guessed.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/apps/{app}/certificates/acme`: serve the app at `hostname` with a managed
/// certificate (fly-go's `CreateCertificateRequest`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAcmeCertificateRequest {
    /// A DNS name of two labels or more (not under `.localhost`, which is served already).
    #[schema(
        pattern = "^\\s*([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?\\s*$",
        max_length = 253
    )]
    pub hostname: String,
}

/// `POST /v1/apps/{app}/certificates/custom`: serve the app at `hostname` with the user's own
/// certificate (fly-go's `ImportCertificateRequest`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportCertificateRequest {
    /// A DNS name of two labels or more (not under `.localhost`, which is served already).
    #[schema(
        pattern = "^\\s*([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?\\s*$",
        max_length = 253
    )]
    pub hostname: String,
    /// The certificate chain, PEM, leaf first.
    pub fullchain: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub private_key: String,
}

/// `GET /v1/apps/{app}/certificates` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCertificatesQuery {
    /// At most this many (default 100, at most 1000; 0 is the default).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the page before.
    #[param(max_length = 253)]
    pub cursor: Option<String>,
    /// Only hostnames containing this text.
    #[param(max_length = 253)]
    pub filter: Option<String>,
}

/// `GET /v1/apps/{app}/certificates`: one page of the app's hostnames, by hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListCertificatesResponse {
    pub certificates: Vec<CertificateSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// How many hostnames match `filter`, on every page.
    pub total_count: u64,
}

/// One hostname in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateSummary {
    pub hostname: String,
    /// `active` when a certificate serves the hostname, else `inactive`.
    pub status: String,
    /// Not checked by aloft: `false`.
    pub acme_dns_configured: bool,
    /// Not checked by aloft: `false`.
    pub acme_alpn_configured: bool,
    /// Not checked by aloft: `false`.
    pub acme_http_configured: bool,
    /// Not checked by aloft: `false`.
    pub ownership_txt_configured: bool,
    /// Whether DNS was checked to point at the app; aloft checks no DNS: `false`.
    pub configured: bool,
    /// A managed certificate was asked for (`POST .../acme`) and not stopped since.
    pub acme_requested: bool,
    pub has_custom_certificate: bool,
    /// A managed certificate serves the hostname.
    pub has_fly_certificate: bool,
    /// RFC 3339: when the hostname was added to the app.
    pub created_at: String,
    /// RFC 3339: when a certificate of it last changed.
    pub updated_at: String,
}

/// `GET /v1/apps/{app}/certificates/{hostname}` (and what the other certificate routes answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateDetailResponse {
    pub hostname: String,
    /// Whether DNS was checked to point at the app; aloft checks no DNS: `false`.
    pub configured: bool,
    pub acme_requested: bool,
    /// `active` when a certificate serves the hostname, else `inactive`.
    pub status: String,
    /// The custom certificate (when uploaded) and the managed one (when issued).
    pub certificates: Vec<CertificateDetail>,
    pub validation: CertificateValidation,
    pub dns_requirements: DnsRequirements,
    /// Why a certificate does not serve the hostname, and what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<ValidationError>,
}

/// One certificate of a hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateDetail {
    /// `custom` (uploaded) or `fly` (managed).
    pub source: String,
    /// `active` (served), `expired`, `not_yet_valid` or `invalid` (it does not load or does
    /// not name the hostname).
    pub status: String,
    /// RFC 3339: when the hostname was added to the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339: the end of the certificate's validity (custom certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Who issues it (managed certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The reference lists the key types issued by its ACME issuer here; aloft lists none.
    pub issued: Vec<IssuedCertificate>,
}

/// A certificate issued for a hostname by the reference's ACME issuer (`issued`; always empty
/// in aloft, which has no ACME issuer yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedCertificate {
    /// `rsa` or `ecdsa`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339.
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
}

/// Which ownership checks passed; aloft runs none of them, so all are `false`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateValidation {
    pub dns_configured: bool,
    pub alpn_configured: bool,
    pub http_configured: bool,
    pub ownership_txt_configured: bool,
}

/// The DNS records to create for the hostname. aloft does not know its public addresses or a
/// name to alias, so every record is empty: point the name at your proxies yourself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DnsRequirements {
    pub a: Vec<String>,
    pub aaaa: Vec<String>,
    pub cname: String,
    pub acme_challenge: AcmeChallengeRequirement,
    pub ownership: OwnershipRequirement,
}

/// The CNAME an ACME DNS challenge needs (empty: aloft has no ACME issuer yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AcmeChallengeRequirement {
    pub name: String,
    pub target: String,
}

/// The TXT record proving ownership (empty: aloft's operator grants hostnames instead).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnershipRequirement {
    pub name: String,
    pub app_value: String,
    pub org_value: String,
}

/// Why a certificate does not serve its hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidationError {
    /// e.g. `expired`, `hostname_mismatch`, `no_acme_issuer`.
    pub code: Option<String>,
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remediation: String,
    /// RFC 3339: when this was found.
    pub timestamp: String,
}
