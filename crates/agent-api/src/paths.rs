//! Every path the agent serves. The constants are axum route templates (`{app}`, `{id}`,
//! `{key}`): the agent's router is built from them, and the functions below fill them for callers.
//! The machine endpoints sit on the public Machines API paths (the control plane forwards a user's
//! request unchanged); the rest are under `/internal/v1/` and are not in the OpenAPI document.

/// `GET` lists an app's machines, `POST` creates one.
pub const MACHINES: &str = "/v1/apps/{app}/machines";
/// `GET` shows a machine, `POST` updates it, `DELETE` destroys it.
pub const MACHINE: &str = "/v1/apps/{app}/machines/{id}";
/// `POST` starts a machine.
pub const MACHINE_START: &str = "/v1/apps/{app}/machines/{id}/start";
/// `POST` stops a machine.
pub const MACHINE_STOP: &str = "/v1/apps/{app}/machines/{id}/stop";
/// `POST` restarts a machine.
pub const MACHINE_RESTART: &str = "/v1/apps/{app}/machines/{id}/restart";
/// `POST` sends a machine's process a signal.
pub const MACHINE_SIGNAL: &str = "/v1/apps/{app}/machines/{id}/signal";
/// `POST` suspends a machine.
pub const MACHINE_SUSPEND: &str = "/v1/apps/{app}/machines/{id}/suspend";
/// `GET` waits for a machine to reach a state.
pub const MACHINE_WAIT: &str = "/v1/apps/{app}/machines/{id}/wait";
/// `GET` shows, `POST` takes, `DELETE` releases a machine's lease.
pub const MACHINE_LEASE: &str = "/v1/apps/{app}/machines/{id}/lease";
/// `POST` cordons a machine (the proxy stops sending it requests).
pub const MACHINE_CORDON: &str = "/v1/apps/{app}/machines/{id}/cordon";
/// `POST` uncordons a machine.
pub const MACHINE_UNCORDON: &str = "/v1/apps/{app}/machines/{id}/uncordon";
/// `GET` a machine's metadata.
pub const MACHINE_METADATA: &str = "/v1/apps/{app}/machines/{id}/metadata";
/// `POST` sets, `DELETE` removes one metadata key.
pub const MACHINE_METADATA_KEY: &str = "/v1/apps/{app}/machines/{id}/metadata/{key}";
/// `GET` a machine's events.
pub const MACHINE_EVENTS: &str = "/v1/apps/{app}/machines/{id}/events";
/// `GET` a machine's versions.
pub const MACHINE_VERSIONS: &str = "/v1/apps/{app}/machines/{id}/versions";
/// `GET` the processes in a machine.
pub const MACHINE_PS: &str = "/v1/apps/{app}/machines/{id}/ps";
/// `POST` runs a command in a machine.
pub const MACHINE_EXEC: &str = "/v1/apps/{app}/machines/{id}/exec";
/// `GET` a machine's logs.
pub const MACHINE_LOGS: &str = "/v1/apps/{app}/machines/{id}/logs";

/// `GET` the host's description ([`HostInfo`](aloft_types::api::HostInfo)).
pub const HOST: &str = "/internal/v1/host";
/// `POST` starts a machine of this host for a request another host's proxy received.
pub const AUTOSTART: &str = "/internal/v1/apps/{app}/machines/{id}/autostart";
/// `GET` the images on the host ([`HostImage`](aloft_types::api::HostImage)s).
pub const IMAGES: &str = "/internal/v1/images";
/// `POST` removes the images no machine uses
/// ([`PruneImagesResponse`](aloft_types::api::PruneImagesResponse)).
pub const IMAGES_PRUNE: &str = "/internal/v1/images/prune";
/// `POST` makes a volume's encrypted disk ([`MakeVolumeRequest`](aloft_types::api::MakeVolumeRequest)),
/// `DELETE` removes its data and snapshots.
pub const VOLUME: &str = "/internal/v1/volumes/{id}";
/// `POST` copies a volume's disk as a snapshot
/// ([`TakeSnapshotRequest`](aloft_types::api::TakeSnapshotRequest) ->
/// [`TakenSnapshot`](aloft_types::api::TakenSnapshot)).
pub const VOLUME_SNAPSHOTS: &str = "/internal/v1/volumes/{id}/snapshots";

/// Fills the `{...}` segments of `template` with `values`, in order. The values go in as they
/// are (app names, machine and volume ids are checked labels), as callers have always sent them.
///
/// # Panics
/// When `values` does not have one value per placeholder (a bug in the caller).
pub fn fill(template: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut values = values.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed placeholder") + open;
        out.push_str(&rest[..open]);
        out.push_str(values.next().expect("one value per placeholder"));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    assert!(values.next().is_none(), "more values than placeholders");
    out
}

/// `/v1/apps/{app}/machines/{id}`.
pub fn machine(app: &str, id: &str) -> String {
    fill(MACHINE, &[app, id])
}

/// `/internal/v1/apps/{app}/machines/{id}/autostart`.
pub fn autostart(app: &str, id: &str) -> String {
    fill(AUTOSTART, &[app, id])
}

/// `/internal/v1/volumes/{id}`.
pub fn volume(id: &str) -> String {
    fill(VOLUME, &[id])
}

/// `/internal/v1/volumes/{id}/snapshots`.
pub fn volume_snapshots(id: &str) -> String {
    fill(VOLUME_SNAPSHOTS, &[id])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_in_order() {
        assert_eq!(machine("web", "abc"), "/v1/apps/web/machines/abc");
        assert_eq!(
            fill(MACHINE_METADATA_KEY, &["web", "abc", "k"]),
            "/v1/apps/web/machines/abc/metadata/k"
        );
        assert_eq!(
            autostart("web", "abc"),
            "/internal/v1/apps/web/machines/abc/autostart"
        );
        assert_eq!(volume("vol_1"), "/internal/v1/volumes/vol_1");
        assert_eq!(volume_snapshots("v"), "/internal/v1/volumes/v/snapshots");
        assert_eq!(fill(IMAGES, &[]), IMAGES);
    }

    #[test]
    #[should_panic(expected = "one value per placeholder")]
    fn a_missing_value_is_a_bug() {
        fill(MACHINE, &["web"]);
    }
}
