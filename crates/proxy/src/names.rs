//! Which app a host name names: `<app>.localhost`, or `<app>.<domain>` under the proxy's app
//! domain. Shared by the request path (`Host`) and TLS (SNI), so that neither imports the other.

/// The app served as `name` (lowercase, no port): `<app>.localhost` or `<app>.<domain>`.
pub(crate) fn app_of_name<'a>(name: &'a str, domain: Option<&str>) -> Option<&'a str> {
    name.strip_suffix(".localhost")
        .or_else(|| domain.and_then(|d| name.strip_suffix(&format!(".{d}"))))
        .filter(|a| !a.is_empty() && !a.contains('.'))
}
