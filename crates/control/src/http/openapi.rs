//! The Machines API's OpenAPI document: the control plane's own endpoints (apps, machine create
//! and list, regions) merged with the machine endpoints the agents serve on the same paths. Where
//! both describe an operation (create, list), the control plane's description wins: it is the one
//! users call. The document is checked in at `openapi/machines-api.json`; a test fails when it
//! drifts from the code.

use super::{
    apps, certificates, ip_assignments, machines, orgs, platform, registry_logins, releases,
    secrets, tokens, volumes,
};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The control plane's part of the document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "aloft Machines API",
        description = "Create and drive machines (isolated runs of an OCI image) in the regions you \
                       pick. Paths and JSON follow Fly.io's Machines API. Every endpoint but this \
                       document needs `Authorization: Bearer <org token>`."
    ),
    paths(
        apps::list_apps,
        apps::create_app,
        apps::get_app,
        apps::delete_app,
        certificates::list_certificates,
        certificates::request_acme_certificate,
        certificates::import_custom_certificate,
        certificates::show_certificate,
        certificates::check_certificate,
        certificates::remove_certificate,
        certificates::remove_acme_certificate,
        certificates::remove_custom_certificate,
        secrets::update_secrets,
        secrets::list_secrets,
        secrets::set_secret,
        secrets::get_secret,
        secrets::delete_secret,
        volumes::create_volume,
        volumes::list_volumes,
        volumes::get_volume,
        volumes::update_volume,
        volumes::destroy_volume,
        volumes::extend_volume,
        volumes::create_snapshot,
        volumes::list_snapshots,
        releases::create_release,
        releases::list_releases,
        releases::finish_release,
        releases::deployed_config,
        machines::list_machines,
        machines::create_machine,
        platform::list_regions,
        platform::placements,
        tokens::create_token,
        tokens::list_tokens,
        tokens::revoke_token,
        registry_logins::set_registry_login,
        registry_logins::list_registry_logins,
        registry_logins::remove_registry_login,
        orgs::list_orgs,
        ip_assignments::list_ip_assignments,
        ip_assignments::assign_ip,
        ip_assignments::delete_ip_assignment,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "Apps", description = "Apps group machines; names are global DNS labels."),
        (name = "Certificates", description = "Hostnames an app is served at over HTTPS, with the user's own (custom) certificate or a managed one (from the development CA, for reserved names, until an ACME issuer is plugged in)."),
        (name = "Secrets", description = "Values machines get as environment variables, encrypted at rest; listed by name and digest only."),
        (name = "Volumes", description = "Persistent storage on one host, encrypted at rest, mounted by one machine at a time."),
        (name = "Releases", description = "One per deploy: its image, strategy and how it ended."),
        (name = "Tokens", description = "The org's API tokens: org-wide or deploy tokens for one app, with an expiry; revoked at once."),
        (name = "Registry logins", description = "The org's credentials for third-party registries, used by its machines' pulls from exactly that host; passwords encrypted at rest and never shown."),
        (name = "Platform", description = "Regions and this document."),
    )
)]
pub struct ControlPlaneApiDoc;

/// Adds the `bearer` security scheme (org API tokens).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "An org API token (`aloft_` + 40 hex characters); `aloft dev up` writes one to \
             <data-dir>/token."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The Machines API's OpenAPI document (control plane paths + the agent's machine paths).
pub fn openapi_document() -> OpenApiDoc {
    let mut doc = ControlPlaneApiDoc::openapi();
    doc.merge(aloft_agent_api::MachinesApiDoc::openapi());
    document_refusals(&mut doc);
    doc
}

/// Every operation that reads a body, a query string or a path parameter can refuse it, whatever
/// its own description lists: 400 when it does not parse (not JSON, a query value of the wrong
/// type, a path segment that is not UTF-8 or holds `\\`, `.` or `..`), 422 when a body parses but
/// is not what the operation takes (a missing or mistyped field).
fn document_refusals(doc: &mut OpenApiDoc) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let refusal = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let reads = |place: ParameterIn| {
                op.parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == place)
            };
            let (has_query, has_path) = (reads(ParameterIn::Query), reads(ParameterIn::Path));
            let has_body = op.request_body.is_some();
            let responses = &mut op.responses.responses;
            if has_query || has_body || has_path {
                responses.entry("400".into()).or_insert_with(|| {
                    refusal("The body, a query parameter or a path segment does not parse").into()
                });
            }
            if has_body {
                responses
                    .entry("422".into())
                    .or_insert_with(|| refusal("The body is not what the operation takes").into());
            }
        }
    }
}

/// This document (no token needed).
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "Platform", operation_id = "Platform_openapi", security(()),
    responses((status = 200, description = "The OpenAPI document of the Machines API", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi_document())
}
