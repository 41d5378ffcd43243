//! The headers of a request to an agent besides `Authorization: Bearer <internal token>`: who
//! asks (set by the control plane, never taken from a user), and the lease nonce users send.
//!
//! The names themselves are defined once in [`aloft_types::api`] (the agent's logs and the
//! runtime read some of them too); this module is where the agent's interface names them.

/// The org that owns the app (slug): `x-aloft-org`.
pub use aloft_types::api::internal::ORG_HEADER;

/// The org's 6PN network id: `x-aloft-network-id`.
pub use aloft_types::api::internal::NETWORK_HEADER;

/// Who the caller is, for lease ownership: `x-aloft-actor`.
pub use aloft_types::api::internal::ACTOR_HEADER;

/// The caller's own org API token, for the registry pulls the request triggers:
/// `x-aloft-registry-token`.
pub use aloft_types::api::internal::REGISTRY_TOKEN_HEADER;

/// The nonce of a lease held on the machine: `fly-machine-lease-nonce`.
pub use aloft_types::api::LEASE_NONCE_HEADER;
