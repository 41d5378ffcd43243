//! aloft's host-side image pipeline: an image reference in, a root filesystem out — a directory
//! for the gVisor backend, an ext4 image for the microVM backend — fetching and unpacking each
//! layer once per host.
//!
//! # Use
//!
//! ```no_run
//! # async fn run() -> Result<(), aloft_image::ImageError> {
//! use aloft_image::{Credentials, ImageConfig, ImageProcess, ImageStore, Reference};
//!
//! let store = ImageStore::open(ImageConfig::new("/var/lib/aloft/images"))?;
//! let reference = Reference::parse("hello:v1", &store.config().default_registry, "personal")?;
//! let creds = Credentials::Basic { username: "x".into(), password: "<org token>".into() };
//! let image = store.pull(&reference, &creds, |p| eprintln!("{p:?}")).await?;
//! let dir = &image.rootfs;                 // gVisor: a read-only base directory
//! let disk = store.ext4(&image).await?;    // microVM: an ext4 image (mkfs.ext4 -d)
//! # let machine_config = aloft_types::MachineConfig::default();
//! let process = image.config.process(&machine_config)?; // argv, env, cwd, user
//! # let _ = (dir, disk, process); Ok(()) }
//! ```
//!
//! Public API: [`ImageStore`] ([`ImageStore::open`], [`ImageStore::pull`],
//! [`ImageStore::ext4`], [`ImageStore::list`], [`ImageStore::prune`]), [`ImageConfig`] and
//! [`Limits`], [`Reference`], [`Credentials`], [`Image`], [`ImageDefaults`] and
//! [`ProcessSpec`] (how `init`/`env` of a machine config combine with the image config — see
//! [`ImageProcess::process`]), [`PullProgress`], [`ImageInfo`], [`PruneReport`],
//! [`ImageError`]; and [`oci_layout`], which writes OCI layouts with no network (aloft's own
//! test images from Debian's `busybox-static`).
//!
//! # The pipeline
//!
//! 1. **Resolve.** `GET /v2/` (authenticating: Basic, or the Docker bearer-token challenge with
//!    Basic credentials at the token realm), then the manifest by tag or digest with `Accept`
//!    headers for OCI manifests/indexes and Docker schema2 manifests/lists. An index yields its
//!    linux/amd64 manifest (a clear error lists the platforms it has otherwise). Every manifest
//!    and blob is verified against its digest (and size); nothing unverified is kept.
//! 2. **Fetch.** Layers missing from the cache are downloaded concurrently
//!    ([`ImageConfig::download_concurrency`]), streamed to a temporary file while hashed (never
//!    held in memory). Connection errors, broken transfers, 5xx and 429 are retried with
//!    exponential backoff ([`ImageConfig::retries`]), then the error names the registry.
//! 3. **Unpack** each layer into `layers/tmp-*` and rename it to `layers/sha256/<hex>` — gzip,
//!    zstd (pure-Rust `ruzstd`) or plain tar, detected by magic bytes — under the security
//!    policy below. On any error the temporary directory is removed: the cache never holds a
//!    partial layer (a full disk included).
//! 4. **Assemble** the root filesystem per manifest digest: layers applied bottom-up into
//!    `images/tmp-*`, then renamed to `images/<hex>/rootfs`, with overlayfs semantics: `.wh.x`
//!    removes `x` from lower layers, `.wh..wh..opq` empties a directory of lower content,
//!    whiteout files never appear in the result. Files are **hard links into the layer cache**
//!    (a copy across filesystems), so the result is a **read-only base**: nothing may write
//!    into it — each machine gets its own writable overlay on top.
//! 5. **ext4** (microVM backend, on demand): `mkfs.ext4 -d` from e2fsprogs, sized content x 1.3
//!    + 64 MiB, written to a temporary name and renamed, cached per manifest digest.
//!
//! **Once per digest.** Concurrent pulls of the same image on a host share one pull (a single
//! flight per manifest digest: config, layers, assembly), and concurrent pulls of different
//! images share each common layer (a single flight per layer digest), so each blob is fetched
//! once; a second image that differs in one layer fetches only that layer. A digest reference
//! already on the host is served without a download, but only to credentials the registry let
//! read it: those that pulled it (or were checked before; the image record keeps a hash of
//! them) need no request, others cost a `HEAD` of the manifest, and a refusal is the
//! registry's.
//!
//! # Where credentials and connections go
//!
//! A pull's credentials are for the registry its reference names and go to that host and port
//! only: never to a token realm on another host (asked for an anonymous token instead), never
//! across a redirect to another host (a blob CDN gets no `Authorization`). Registries, realms
//! and redirect targets must resolve to public addresses unless they are the default registry
//! or listed in [`ImageConfig::private_registries`]; names are resolved once and the checked
//! addresses are the ones connected to (no DNS rebinding). Which credentials a pull gets is the
//! caller's choice: the agent gives the org token to aloft's own registry only.
//!
//! # Security policy (layers are untrusted input)
//!
//! Refused, with an error naming the layer, the entry and the reason, leaving nothing of the
//! layer behind:
//!
//! - paths that are absolute or contain a `..` component;
//! - entries whose parent is a symlink (or not a directory) in the layer: nothing is ever
//!   written through a symlink, so `evil -> /` followed by `evil/etc/passwd` is refused. Every
//!   parent is checked with `lstat` inside the layer directory, files are created with
//!   `O_CREAT|O_EXCL` (a symlink in the final position is never followed), and a later entry
//!   replaces an earlier one by removing it first;
//! - hard links whose target is not a regular file already unpacked in the same layer, reached
//!   without a symlink (so a hard link can never reach a host file such as `/etc/shadow`);
//! - character and block devices (the machine's `/dev` is provided at start);
//! - entry types other than files, directories, symlinks, hard links and FIFOs (FIFOs are
//!   allowed: harmless, and some images carry one);
//! - uids or gids beyond 32 bits; paths deeper than 256 components;
//! - extended headers (PAX, GNU long names) larger than 1 MiB, refused by a shadow reader of
//!   the tar block structure before the parser buffers them (a crafted "file name" of several
//!   GiB would otherwise be held in memory);
//! - decompression bombs, by [`Limits`] checked while streaming: uncompressed bytes per layer
//!   ([`Limits::max_layer_bytes`]), entries per layer ([`Limits::max_files`]), the ratio of
//!   uncompressed to compressed size ([`Limits::max_ratio`], above
//!   [`Limits::RATIO_GRACE_BYTES`]), and the whole image ([`Limits::max_image_bytes`]). The
//!   error names the limit and the setting that raises it.
//!
//! Allowed: symlinks may point anywhere, absolute targets included (they are resolved inside
//! the machine, never on the host: neither unpacking nor assembly follows one).
//!
//! Modes, ownership and set-uid:
//!
//! - modes and mtimes (PAX sub-second mtimes included) are kept; directory metadata is applied
//!   after their content, and only to directories still reached without a symlink (a later
//!   entry may replace a directory by a symlink pointing out of the layer);
//! - ownership (uid/gid, PAX included) is kept when running as root and skipped otherwise;
//! - set-uid/set-gid bits are kept only on regular files, only when running as root (ownership
//!   kept too), and never on a group- or world-writable file (a writable set-uid binary is
//!   never legitimate); directories keep set-gid and sticky (`/tmp` 1777), never set-uid;
//! - when not running as root, owners always get read/write (and search on directories) so the
//!   cache stays readable and removable by the user that wrote it;
//! - the data directory is created mode 0700, so host users cannot reach the set-uid binaries
//!   images contain;
//! - extended attributes (file capabilities included) are not applied.
//!
//! # Decisions
//!
//! - Registries are reached over plain HTTP (this build has no TLS client, as in
//!   `aloft-registry`); system proxy variables are ignored. A reference without a host is on
//!   [`ImageConfig::default_registry`]; `name:tag` means `<default registry>/<org>/name:tag`.
//! - Layer compression is detected from the bytes, not trusted from the media type; zstd is
//!   decoded by `ruzstd` (pure Rust, no C build; window capped at 100 MiB, bounding memory).
//! - Layer `diff_ids` are not checked: the compressed digest, verified before a byte is
//!   unpacked, already pins the content.
//! - One [`ImageStore`] per data directory: opening removes the temporaries a crash left.

mod assemble;
mod config;
mod defaults;
mod error;
mod ext4;
mod fsmeta;
mod netpolicy;
mod pins;
mod reference;
mod registry;
mod store;
mod unpack;

pub use aloft_oci::defaults::{DEFAULT_PATH, ImageDefaults};
/// Writing OCI image layouts (moved to `aloft_oci::layout`; kept here for this crate's users).
pub use aloft_oci::layout as oci_layout;
pub use config::{ImageConfig, Limits};
pub use defaults::{ImageProcess, ProcessSpec};
pub use error::ImageError;
pub use pins::Pinned;
pub use reference::Reference;
pub use registry::Credentials;
pub use store::{Image, ImageInfo, ImageStore, PruneReport, PullPhase, PullProgress};
pub use unpack::Compression;
