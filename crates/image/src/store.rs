//! [`ImageStore`]: the per-host cache of layers, root filesystems and ext4 images, and the pull
//! pipeline that fills it.
//!
//! On disk, under [`ImageConfig::data_dir`] (mode 0700):
//!
//! ```text
//! layers/sha256/<hex>/        an unpacked layer (whiteout files kept as they are)
//! layers/sha256/<hex>.json    what unpacking found (sizes, compression, implicit directories)
//! layers/tmp-*/               a layer being unpacked (renamed into place when complete)
//! images/<hex>/rootfs/        an assembled root filesystem, <hex> = the manifest digest
//! images/<hex>/image.json     the image record (references, run defaults, layers)
//! images/<hex>/rootfs.ext4    its ext4 image, once asked for
//! images/tmp-*/               an image being assembled
//! blobs/tmp-*                 a layer being downloaded (deleted once unpacked)
//! ```
//!
//! Everything becomes visible by a rename of a complete temporary, so a crash, a refused layer
//! or a full disk never leaves a partial entry; leftovers of a crash are removed by
//! [`ImageStore::open`]. A layer's `.json` is written before its directory is renamed into place,
//! so a layer directory always has its record.

use crate::assemble::{self, LayerDir};
use crate::config::ImageConfig;
use crate::error::ImageError;
use crate::ext4;
use crate::fsmeta;
use crate::netpolicy::{self, AddressPolicy, CheckedResolver};
use crate::pins::{Pinned, Pins};
use crate::reference::Reference;
use crate::registry::{Credentials, Resolved, Session};
use crate::unpack::{self, Compression, UnpackOptions};
use aloft_oci::defaults::ImageDefaults;
use aloft_oci::digest;
use aloft_oci::flight::{Flight, Flights};
use aloft_oci::manifest::{ConfigFile, Descriptor};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// An image pulled and assembled on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The reference it was pulled by.
    pub reference: Reference,
    /// The digest of its (linux/amd64) manifest: the image's identity on this host.
    pub manifest_digest: String,
    /// Entrypoint, Cmd, Env, WorkingDir, User and ExposedPorts of its config.
    pub config: ImageDefaults,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    /// The assembled root filesystem: a read-only base (see the crate doc, "The pipeline").
    pub rootfs: PathBuf,
}

impl Image {
    /// The machine object's `image_ref`.
    pub fn image_ref(&self) -> aloft_types::machine::ImageRef {
        aloft_types::machine::ImageRef {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            tag: self.reference.tag.clone().unwrap_or_default(),
            digest: self.manifest_digest.clone(),
        }
    }
}

/// An image in the store, as `aloft image list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub manifest_digest: String,
    /// Every reference it was pulled by on this host.
    pub references: Vec<String>,
    pub layers: Vec<String>,
    /// Uncompressed size of its layers.
    pub unpacked_bytes: u64,
    /// When it was assembled (RFC 3339).
    pub created_at: String,
    pub rootfs: PathBuf,
    /// Its ext4 image, if one was built.
    pub ext4: Option<PathBuf>,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Manifest digests of the removed images (root filesystems and ext4 images).
    pub images_removed: Vec<String>,
    pub ext4_removed: usize,
    pub layers_removed: usize,
    /// Bytes freed: the removed layers' unpacked sizes plus the removed ext4 images' sizes (the
    /// root filesystems are hard links into the layers and free little by themselves).
    pub bytes_freed: u64,
}

/// Where a pull is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPhase {
    /// Talking to the registry: authentication, manifest.
    #[default]
    Resolving,
    /// Downloading and unpacking layers.
    Fetching,
    /// Assembling the root filesystem.
    Assembling,
    /// Finished.
    Done,
}

/// Progress of a pull, as the CLI shows it. Concurrent pulls of the same image on a host share
/// one download and all see its progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullProgress {
    pub phase: PullPhase,
    /// Distinct layers of the image.
    pub layers_total: usize,
    /// Layers ready (cached before the pull, or fetched and unpacked).
    pub layers_done: usize,
    /// Layers that were already in the cache.
    pub layers_cached: usize,
    /// Compressed bytes of the layers that had to be fetched.
    pub bytes_total: u64,
    /// Bytes received so far (a broken transfer that is retried counts twice).
    pub bytes_fetched: u64,
}

/// What unpacking a layer recorded (`layers/sha256/<hex>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LayerInfo {
    digest: String,
    compressed_size: u64,
    compression: Compression,
    entries: u64,
    unpacked_bytes: u64,
    implicit_dirs: Vec<String>,
}

/// An image record (`images/<hex>/image.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredImage {
    manifest_digest: String,
    references: Vec<String>,
    config: ImageDefaults,
    layers: Vec<String>,
    unpacked_bytes: u64,
    created_at: String,
    /// Who the registry let read this image: [`reader_key`]s of the credentials that pulled it
    /// or whose access was checked (newest last, at most [`MAX_READERS`]). Others are checked
    /// with the registry before the image is reused for them.
    #[serde(default)]
    readers: Vec<String>,
}

/// Reader keys kept per image (the oldest are forgotten first: they are only asked again).
const MAX_READERS: usize = 32;

/// Who reads an image, without keeping the credentials: SHA-256 of the registry, the
/// repository and the `Authorization` those credentials make (tokens are random, so the hash
/// does not give them away).
fn reader_key(reference: &Reference, creds: &Credentials) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for part in [
        reference.registry.as_str(),
        reference.repository.as_str(),
        &creds.basic_header().unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The per-host image store. Cheap to clone (an `Arc` inside); use one per data directory.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("data_dir", &self.inner.config.data_dir)
            .field("default_registry", &self.inner.config.default_registry)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ImageConfig,
    http: reqwest::Client,
    /// Where the registry client may connect (`netpolicy`).
    policy: Arc<AddressPolicy>,
    root: bool,
    layers_dir: PathBuf,
    images_dir: PathBuf,
    blobs_dir: PathBuf,
    /// Single flights (layers, images, ext4 images): work done once for everyone who asks for
    /// it at the same time. A failure is handed to everyone waiting rather than retried by each
    /// in turn (which, with a registry down, would multiply the retries by the number of
    /// waiters); a cancelled pull lets the next waiter do the work.
    layer_flights: Flights<LayerInfo, ImageError>,
    image_flights: Flights<StoredImage, ImageError, watch::Sender<PullProgress>>,
    ext4_flights: Flights<PathBuf, ImageError>,
    /// The digests pulls and ext4 builds use now: prune never removes them (`pins`).
    pins: Arc<Pins>,
    /// Serializes rewrites of image records.
    records: Mutex<()>,
}

/// One pull of one image on this host, shared by every concurrent pull of it, with its
/// progress (the flight's shared state).
type ImageFlight = Flight<StoredImage, ImageError, watch::Sender<PullProgress>>;

fn create_private_dir(path: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| ImageError::io("create directory", path, e))
}

fn interrupted(e: tokio::task::JoinError) -> ImageError {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    ImageError::Interrupted {
        detail: e.to_string(),
    }
}

/// Writes JSON to `path` atomically (temporary file + rename).
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create a temporary file in", dir, e))?;
    let body = serde_json::to_vec_pretty(value)
        .map_err(|e| ImageError::io("encode", path, io::Error::other(e)))?;
    tmp.write_all(&body)
        .map_err(|e| ImageError::io("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| ImageError::io("write", path, e.error))?;
    Ok(())
}

/// Reads a JSON record; a missing file is `None`.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ImageError> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable record: {e}");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError::io("read", path, e)),
    }
}

fn hex(digest: &str) -> Result<&str, ImageError> {
    digest::hex_of(digest).map_err(|e| ImageError::InvalidReference {
        reference: digest.to_string(),
        reason: e.detail(),
    })
}

impl ImageStore {
    /// Opens (or creates) the store in `config.data_dir` and removes what a crash left behind.
    pub fn open(config: ImageConfig) -> Result<ImageStore, ImageError> {
        config.validate()?;
        let data = &config.data_dir;
        create_private_dir(data)?;
        fs::set_permissions(data, fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io("set permissions of", data, e))?;
        let layers_dir = data.join("layers");
        let images_dir = data.join("images");
        let blobs_dir = data.join("blobs");
        for d in [&layers_dir.join("sha256"), &images_dir, &blobs_dir] {
            create_private_dir(d)?;
        }
        // leftovers of a crash: temporaries are never complete
        let image_dirs: Vec<PathBuf> = fs::read_dir(&images_dir)
            .map_err(|e| ImageError::io("read directory", &images_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("tmp-"))
            })
            .collect();
        let records = layers_dir.join("sha256");
        for dir in [&layers_dir, &records, &images_dir, &blobs_dir]
            .into_iter()
            .chain(image_dirs.iter())
        {
            for entry in fs::read_dir(dir).map_err(|e| ImageError::io("read directory", dir, e))? {
                let entry = entry.map_err(|e| ImageError::io("read directory", dir, e))?;
                if entry.file_name().to_string_lossy().starts_with("tmp-") {
                    let p = entry.path();
                    fsmeta::remove_any(&p).map_err(|e| ImageError::io("remove", &p, e))?;
                }
            }
        }
        let policy = Arc::new(
            AddressPolicy::new(&config.default_registry, &config.private_registries).map_err(
                |reason| ImageError::InvalidConfig {
                    field: "private_registries",
                    reason,
                },
            )?,
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver::new(policy.clone())))
            .redirect(netpolicy::redirects(policy.clone()))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("aloft-image/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::InvalidConfig {
                field: "http client",
                reason: e.to_string(),
            })?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root: fsmeta::running_as_root(),
                layers_dir,
                images_dir,
                blobs_dir,
                http,
                policy,
                layer_flights: Flights::new(),
                image_flights: Flights::new(),
                ext4_flights: Flights::new(),
                pins: Arc::default(),
                records: Mutex::new(()),
                config,
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &ImageConfig {
        &self.inner.config
    }

    /// Pulls `reference` and assembles its root filesystem, fetching only the layers this host
    /// does not have. Concurrent pulls of the same image (or of images sharing layers) fetch
    /// each blob once. A digest reference already on the host is reused without a download,
    /// but only once the registry has let these credentials read it: credentials that pulled
    /// it (or were checked) before need no registry; others cost a `HEAD` of the manifest, so
    /// nobody runs an image by digest that the registry would not give them.
    /// `progress` is called as the pull advances (from this task; keep it quick).
    pub async fn pull(
        &self,
        reference: &Reference,
        creds: &Credentials,
        progress: impl Fn(PullProgress) + Send + Sync,
    ) -> Result<Image, ImageError> {
        Ok(self.pull_pinned(reference, creds, progress).await?.0)
    }

    /// [`ImageStore::pull`], with the image pinned until the [`Pinned`] is dropped: a prune
    /// keeps it meanwhile (hold it until something that a prune's `keep` comes from names it).
    pub async fn pull_pinned(
        &self,
        reference: &Reference,
        creds: &Credentials,
        progress: impl Fn(PullProgress) + Send + Sync,
    ) -> Result<(Image, Pinned), ImageError> {
        progress(PullProgress::default());
        let reader = reader_key(reference, creds);
        if let Some(d) = &reference.digest {
            let pinned = self.inner.pins.pin([d.clone()]);
            if let Some(stored) = self.inner.load_image(d)? {
                if !stored.readers.contains(&reader) {
                    self.session(reference, creds).check_access(d).await?;
                }
                let image = self
                    .inner
                    .finish(stored, reference, Some(&reader), None, &progress)?;
                return Ok((image, pinned));
            }
        }
        let session = self.session(reference, creds);
        session.login().await?;
        let resolved = session.resolve(reference).await?;
        let pinned = self.inner.pins.pin([resolved.digest.clone()]);
        if let Some(stored) = self.inner.load_image(&resolved.digest)? {
            let image = self
                .inner
                .finish(stored, reference, Some(&reader), None, &progress)?;
            return Ok((image, pinned));
        }
        let flight = self.inner.image_flights.join(&resolved.digest);
        let mut rx = flight.state().subscribe();
        let build = flight.run(|| {
            Inner::build_image(
                self.inner.clone(),
                session,
                resolved,
                reference.to_string(),
                flight.flight().clone(),
            )
        });
        let stored = {
            tokio::pin!(build);
            loop {
                tokio::select! {
                    r = &mut build => break r?,
                    Ok(()) = rx.changed() => progress(rx.borrow_and_update().clone()),
                }
            }
        };
        // the watch coalesces updates: hand over the latest state before the final one
        if rx.has_changed().unwrap_or(false) {
            progress(rx.borrow_and_update().clone());
        }
        let last = rx.borrow().clone();
        drop(flight);
        let image = self
            .inner
            .finish(stored, reference, Some(&reader), Some(last), &progress)?;
        Ok((image, pinned))
    }

    /// The image `reference` names by digest, from this host only, without asking the
    /// registry whether anyone may read it: for the agent's own starts of a machine whose
    /// record already names that image (its access was checked when the record was written).
    /// [`ImageError::ImageNotFound`] when it is not on this host. Pinned like
    /// [`ImageStore::pull_pinned`].
    pub async fn on_host(
        &self,
        reference: &Reference,
        progress: impl Fn(PullProgress) + Send + Sync,
    ) -> Result<(Image, Pinned), ImageError> {
        let digest = reference.digest.clone().unwrap_or_default();
        let pinned = self.inner.pins.pin([digest.clone()]);
        match self.inner.load_image(&digest)? {
            Some(stored) => Ok((
                self.inner
                    .finish(stored, reference, None, None, &progress)?,
                pinned,
            )),
            None => Err(ImageError::ImageNotFound { digest }),
        }
    }

    fn session(&self, reference: &Reference, creds: &Credentials) -> Session {
        let c = &self.inner.config;
        Session::new(
            self.inner.http.clone(),
            self.inner.policy.clone(),
            reference,
            creds,
            c.retries,
            c.retry_backoff,
        )
    }

    /// The ext4 image of a pulled image for the microVM backend, built once per image and
    /// cached (`images/<hex>/rootfs.ext4`). Needs `mkfs.ext4` (Debian package `e2fsprogs`).
    pub async fn ext4(&self, image: &Image) -> Result<PathBuf, ImageError> {
        let _pinned = self.inner.pins.pin([image.manifest_digest.clone()]);
        let h = hex(&image.manifest_digest)?;
        if self.inner.load_image(&image.manifest_digest)?.is_none() {
            return Err(ImageError::ImageNotFound {
                digest: image.manifest_digest.clone(),
            });
        }
        let dir = self.inner.images_dir.join(h);
        let out = dir.join("rootfs.ext4");
        if out.is_file() {
            return Ok(out);
        }
        let flight = self.inner.ext4_flights.join(h);
        flight
            .run(|| async {
                if !out.is_file() {
                    ext4::build(&dir.join("rootfs"), &out).await?;
                }
                Ok(out.clone())
            })
            .await
    }

    /// The images on this host, oldest first.
    pub async fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.list())
            .await
            .map_err(interrupted)?
    }

    /// Removes every image whose manifest digest is not in `keep` (root filesystem and ext4
    /// image), then every layer no remaining image uses. What pulls in progress use is kept;
    /// pulls and prunes do not wait for each other (`pins`). Leftovers of interrupted work are
    /// removed when the store opens.
    pub async fn prune(&self, keep: &[String]) -> Result<PruneReport, ImageError> {
        let keep: HashSet<String> = keep
            .iter()
            .map(|d| hex(d).map(str::to_string))
            .collect::<Result<_, _>>()?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.prune(&keep))
            .await
            .map_err(interrupted)?
    }
}

impl Inner {
    fn layer_path(&self, hex: &str) -> PathBuf {
        self.layers_dir.join("sha256").join(hex)
    }

    fn layer_record(&self, hex: &str) -> PathBuf {
        self.layers_dir.join("sha256").join(format!("{hex}.json"))
    }

    fn load_layer(&self, digest: &str) -> Result<Option<LayerInfo>, ImageError> {
        let h = hex(digest)?;
        if !self.layer_path(h).is_dir() {
            return Ok(None);
        }
        read_json(&self.layer_record(h))
    }

    fn load_image(&self, digest: &str) -> Result<Option<StoredImage>, ImageError> {
        let h = hex(digest)?;
        let dir = self.images_dir.join(h);
        match read_json::<StoredImage>(&dir.join("image.json"))? {
            Some(s) => Ok(Some(s)),
            None if dir.exists() => {
                // a record that cannot be read: rebuild the image
                fsmeta::remove_any(&dir).map_err(|e| ImageError::io("remove", &dir, e))?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Records the reference (and the reader the registry let read it), and reports the end of
    /// a pull.
    fn finish(
        &self,
        mut stored: StoredImage,
        reference: &Reference,
        reader: Option<&String>,
        last: Option<PullProgress>,
        progress: &(impl Fn(PullProgress) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let name = reference.to_string();
        let recorded = |s: &StoredImage| {
            s.references.contains(&name) && reader.is_none_or(|r| s.readers.contains(r))
        };
        if !recorded(&stored) {
            let _lock = self.records.lock();
            let h = hex(&stored.manifest_digest)?;
            let path = self.images_dir.join(h).join("image.json");
            if let Some(current) = read_json::<StoredImage>(&path)? {
                stored = current;
            }
            if !recorded(&stored) {
                if !stored.references.contains(&name) {
                    stored.references.push(name);
                }
                if let Some(r) = reader.filter(|r| !stored.readers.contains(r)) {
                    stored.readers.push(r.clone());
                    let excess = stored.readers.len().saturating_sub(MAX_READERS);
                    stored.readers.drain(..excess);
                }
                write_json(&path, &stored)?;
            }
        }
        let distinct: HashSet<&String> = stored.layers.iter().collect();
        let mut done = last.unwrap_or(PullProgress {
            layers_total: distinct.len(),
            layers_done: distinct.len(),
            layers_cached: distinct.len(),
            ..PullProgress::default()
        });
        done.phase = PullPhase::Done;
        done.layers_done = done.layers_total;
        progress(done);
        let h = hex(&stored.manifest_digest)?;
        Ok(Image {
            reference: reference.clone(),
            manifest_digest: stored.manifest_digest.clone(),
            rootfs: self.images_dir.join(h).join("rootfs"),
            config: stored.config,
            layers: stored.layers,
        })
    }

    /// Fetches the config and the missing layers, then assembles the root filesystem. Runs once
    /// per image digest at a time (the image flight).
    async fn build_image(
        inner: Arc<Inner>,
        session: Session,
        resolved: Resolved,
        name: String,
        flight: Arc<ImageFlight>,
    ) -> Result<StoredImage, ImageError> {
        if let Some(stored) = inner.load_image(&resolved.digest)? {
            return Ok(stored);
        }
        let manifest = &resolved.manifest;
        let limits = &inner.config.limits;

        let config_bytes = session.blob_bytes(&manifest.config).await?;
        let config: ConfigFile =
            serde_json::from_slice(&config_bytes).map_err(|e| ImageError::InvalidManifest {
                reference: name.clone(),
                detail: format!("the image config is not valid JSON: {e}"),
            })?;
        let wrong = |v: &str, want: &str| !v.is_empty() && v != want;
        if wrong(&config.os, "linux") || wrong(&config.architecture, "amd64") {
            return Err(ImageError::NoPlatform {
                reference: name,
                available: format!("{}/{}", config.os, config.architecture),
            });
        }

        let compressed: u64 = manifest.layers.iter().map(|l| l.size).sum();
        if compressed > limits.max_image_bytes {
            return Err(ImageError::LimitExceeded {
                what: format!("image {name}"),
                limit: "the image size limit",
                detail: format!(
                    "its layers are {compressed} bytes compressed, more than {}",
                    limits.max_image_bytes
                ),
                field: "max_image_bytes",
            });
        }
        let mut seen = HashSet::new();
        let distinct: Vec<&Descriptor> = manifest
            .layers
            .iter()
            .filter(|d| seen.insert(d.digest.clone()))
            .collect();
        // Until the image is assembled, a prune must not take the layers it is made of.
        let _pinned = inner.pins.pin(distinct.iter().map(|d| d.digest.clone()));
        let mut infos: HashMap<String, LayerInfo> = HashMap::new();
        let mut missing = Vec::new();
        for d in &distinct {
            match inner.load_layer(&d.digest)? {
                Some(info) => {
                    infos.insert(d.digest.clone(), info);
                }
                None => missing.push((*d).clone()),
            }
        }
        flight.state().send_modify(|p| {
            p.phase = PullPhase::Fetching;
            p.layers_total = distinct.len();
            p.layers_cached = infos.len();
            p.layers_done = infos.len();
            p.bytes_total = missing.iter().map(|d| d.size).sum();
        });

        // After a failure, layers not started yet are skipped, and those in progress are let
        // finish (they stay cached for the next attempt), so nothing of this pull is still
        // running, unaccounted for, when it returns.
        let permits = Arc::new(Semaphore::new(inner.config.download_concurrency));
        let failed = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for desc in missing {
            let (inner, session, flight, permits, failed) = (
                inner.clone(),
                session.clone(),
                flight.clone(),
                permits.clone(),
                failed.clone(),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if failed.load(Ordering::SeqCst) {
                    return None;
                }
                let info = Inner::ensure_layer(&inner, &session, &desc, flight.state()).await;
                match &info {
                    Ok(_) => flight.state().send_modify(|p| p.layers_done += 1),
                    Err(_) => failed.store(true, Ordering::SeqCst),
                }
                Some(info)
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(interrupted)? {
                Some(Ok(info)) => {
                    infos.insert(info.digest.clone(), info);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        let unpacked: u64 = infos.values().map(|i| i.unpacked_bytes).sum();
        if unpacked > limits.max_image_bytes {
            return Err(ImageError::LimitExceeded {
                what: format!("image {name}"),
                limit: "the image size limit",
                detail: format!(
                    "its layers unpack to {unpacked} bytes, more than {}",
                    limits.max_image_bytes
                ),
                field: "max_image_bytes",
            });
        }
        flight
            .state()
            .send_modify(|p| p.phase = PullPhase::Assembling);
        let stored = StoredImage {
            manifest_digest: resolved.digest.clone(),
            references: vec![name],
            config: ImageDefaults::from_config(config.config.as_ref()),
            layers: manifest.layers.iter().map(|d| d.digest.clone()).collect(),
            unpacked_bytes: unpacked,
            created_at: aloft_types::time::rfc3339(aloft_types::time::now_ms()),
            readers: Vec::new(),
        };
        tokio::task::spawn_blocking(move || inner.assemble_image(stored, &infos))
            .await
            .map_err(interrupted)?
    }

    /// Downloads and unpacks one layer, once per host even when many pulls want it.
    async fn ensure_layer(
        inner: &Arc<Inner>,
        session: &Session,
        desc: &Descriptor,
        progress: &watch::Sender<PullProgress>,
    ) -> Result<LayerInfo, ImageError> {
        let flight = inner.layer_flights.join(&desc.digest);
        flight
            .run(|| async {
                if let Some(info) = inner.load_layer(&desc.digest)? {
                    return Ok(info);
                }
                let blob = tempfile::Builder::new()
                    .prefix("tmp-")
                    .tempfile_in(&inner.blobs_dir)
                    .map_err(|e| ImageError::io("create a temporary file in", &inner.blobs_dir, e))?
                    .into_temp_path();
                let on_bytes = |n: u64| progress.send_modify(|p| p.bytes_fetched += n);
                session.blob_to_file(desc, &blob, &on_bytes).await?;
                let (inner, desc) = (inner.clone(), desc.clone());
                // `blob` moves into the task and is deleted when it ends, whatever happens
                tokio::task::spawn_blocking(move || inner.unpack_layer(&desc, &blob))
                    .await
                    .map_err(interrupted)?
            })
            .await
    }

    /// Unpacks a downloaded, verified blob into `layers/tmp-*`, then renames it into place.
    fn unpack_layer(&self, desc: &Descriptor, blob: &Path) -> Result<LayerInfo, ImageError> {
        let h = hex(&desc.digest)?;
        let file = fs::File::open(blob).map_err(|e| ImageError::io("open", blob, e))?;
        let input = io::BufReader::with_capacity(256 << 10, file);
        // removed on drop: an error at any point leaves no partial layer behind
        let tmp = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(&self.layers_dir)
            .map_err(|e| ImageError::io("create a temporary directory in", &self.layers_dir, e))?;
        let stats = unpack::unpack(
            input,
            tmp.path(),
            &UnpackOptions {
                layer: &desc.digest,
                limits: &self.config.limits,
                compressed_size: desc.size,
                root: self.root,
            },
        )?;
        let info = LayerInfo {
            digest: desc.digest.clone(),
            compressed_size: desc.size,
            compression: stats.compression,
            entries: stats.entries,
            unpacked_bytes: stats.bytes,
            implicit_dirs: stats.implicit_dirs,
        };
        write_json(&self.layer_record(h), &info)?;
        let target = self.layer_path(h);
        let tmp = tmp.keep();
        match fs::rename(&tmp, &target) {
            Ok(()) => {
                tracing::info!(layer = %desc.digest, bytes = info.unpacked_bytes, "layer unpacked");
                Ok(info)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                if target.is_dir() {
                    // another process unpacked it meanwhile
                    Ok(info)
                } else {
                    Err(ImageError::io("move into place", &target, e))
                }
            }
        }
    }

    /// Assembles `images/tmp-*/rootfs` from the cached layers, then renames it into place.
    fn assemble_image(
        &self,
        stored: StoredImage,
        infos: &HashMap<String, LayerInfo>,
    ) -> Result<StoredImage, ImageError> {
        let h = hex(&stored.manifest_digest)?.to_string();
        let layers = stored
            .layers
            .iter()
            .map(|d| {
                Ok(LayerDir {
                    path: self.layer_path(hex(d)?),
                    implicit_dirs: infos
                        .get(d)
                        .map(|i| i.implicit_dirs.iter().cloned().collect())
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        let tmp = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(&self.images_dir)
            .map_err(|e| ImageError::io("create a temporary directory in", &self.images_dir, e))?;
        assemble::assemble(&layers, &tmp.path().join("rootfs"), self.root)?;
        write_json(&tmp.path().join("image.json"), &stored)?;
        let target = self.images_dir.join(&h);
        let tmp = tmp.keep();
        match fs::rename(&tmp, &target) {
            Ok(()) => Ok(stored),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                match self.load_image(&stored.manifest_digest)? {
                    Some(existing) => Ok(existing),
                    None => Err(ImageError::io("move into place", &target, e)),
                }
            }
        }
    }

    fn images(&self) -> Result<Vec<(String, StoredImage)>, ImageError> {
        let mut out = Vec::new();
        let dir = &self.images_dir;
        for entry in fs::read_dir(dir).map_err(|e| ImageError::io("read directory", dir, e))? {
            let entry = entry.map_err(|e| ImageError::io("read directory", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") {
                continue;
            }
            if let Some(stored) = read_json::<StoredImage>(&entry.path().join("image.json"))? {
                out.push((name, stored));
            }
        }
        Ok(out)
    }

    fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let mut out: Vec<ImageInfo> = self
            .images()?
            .into_iter()
            .map(|(h, s)| {
                let dir = self.images_dir.join(&h);
                let ext4 = dir.join("rootfs.ext4");
                ImageInfo {
                    manifest_digest: s.manifest_digest,
                    references: s.references,
                    layers: s.layers,
                    unpacked_bytes: s.unpacked_bytes,
                    created_at: s.created_at,
                    rootfs: dir.join("rootfs"),
                    ext4: ext4.is_file().then_some(ext4),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (a.created_at.as_str(), a.manifest_digest.as_str())
                .cmp(&(b.created_at.as_str(), b.manifest_digest.as_str()))
        });
        Ok(out)
    }

    fn prune(&self, keep: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let mut report = PruneReport::default();
        let remove = |p: &Path| fsmeta::remove_any(p).map_err(|e| ImageError::io("remove", p, e));
        // What is removed is first moved aside (a rename, while no pull can pin it), then
        // deleted; `tmp-` names are work in progress, or leftovers the next open removes.
        let aside = |p: &Path| -> Result<PathBuf, ImageError> {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let to = p.with_file_name(format!("tmp-pruned-{name}"));
            fs::rename(p, &to).map_err(|e| ImageError::io("rename", p, e))?;
            Ok(to)
        };
        // images
        let mut used: HashSet<String> = HashSet::new();
        let dir = &self.images_dir;
        for entry in fs::read_dir(dir).map_err(|e| ImageError::io("read directory", dir, e))? {
            let entry = entry.map_err(|e| ImageError::io("read directory", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") {
                continue;
            }
            let path = entry.path();
            let stored = read_json::<StoredImage>(&path.join("image.json"))?;
            let moved = match &stored {
                Some(_) if keep.contains(&name) => None,
                _ => self
                    .pins
                    .unless_pinned(&format!("sha256:{name}"), || aside(&path))
                    .transpose()?,
            };
            let Some(moved) = moved else {
                used.extend(stored.into_iter().flat_map(|s| s.layers));
                continue;
            };
            if let Ok(m) = fs::metadata(moved.join("rootfs.ext4")) {
                report.ext4_removed += 1;
                report.bytes_freed += m.len();
            }
            remove(&moved)?;
            if let Some(s) = stored {
                report.images_removed.push(s.manifest_digest);
            }
        }
        // layers no kept image uses, and their records
        let sha = self.layers_dir.join("sha256");
        for entry in fs::read_dir(&sha).map_err(|e| ImageError::io("read directory", &sha, e))? {
            let entry = entry.map_err(|e| ImageError::io("read directory", &sha, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let h = name.strip_suffix(".json").unwrap_or(&name).to_string();
            let digest = format!("sha256:{h}");
            if name.starts_with("tmp-") || used.contains(&digest) {
                continue;
            }
            let (layer, record) = (sha.join(&h), sha.join(format!("{h}.json")));
            if name.ends_with(".json") {
                // removed with its layer below, or an orphan record
                if !layer.exists() {
                    self.pins
                        .unless_pinned(&digest, || remove(&record))
                        .transpose()?;
                }
                continue;
            }
            let info = read_json::<LayerInfo>(&record)?;
            let moved = self
                .pins
                .unless_pinned(&digest, || -> Result<_, ImageError> {
                    let moved_record = record.exists().then(|| aside(&record)).transpose()?;
                    Ok((aside(&layer)?, moved_record))
                })
                .transpose()?;
            let Some((moved, moved_record)) = moved else {
                continue;
            };
            report.bytes_freed += info.map_or(0, |i| i.unpacked_bytes);
            remove(&moved)?;
            if let Some(r) = moved_record {
                remove(&r)?;
            }
            report.layers_removed += 1;
        }
        report.images_removed.sort();
        Ok(report)
    }
}
