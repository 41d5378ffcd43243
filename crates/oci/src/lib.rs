//! OCI shapes shared by the image pipeline (`aloft-image`) and the registry (`aloft-registry`),
//! written once: sha256 [`digest`]s, [`media_type`]s, [`manifest`]s, indexes and image configs
//! (with the image pipeline's strict parse), the registry's lenient reading of what a manifest
//! references ([`refs`]), the spec's [`name`] grammars (repositories, tags, digests), and the
//! [`flight`] (single flight) both use to fetch each blob once. It also writes OCI image
//! [`layout`]s with no network (`aloft image build`, aloft's test images), with the run
//! settings of an image config ([`ImageDefaults`]).
//!
//! Where the two users differ in strictness, each keeps its own behaviour: the registry's
//! validated [`RepoName`] and [`ManifestRef`] are safe as path components; the image pipeline
//! checks digests in place with [`digest::hex_of`] and parses manifests strictly.

pub mod defaults;
pub mod digest;
pub mod flight;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod refs;

pub use defaults::ImageDefaults;
pub use digest::{Digest, DigestError};
pub use name::{ManifestRef, NameError, RepoName};
