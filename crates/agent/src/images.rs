//! Machines' images: `config.image` resolved against the host's default registry, pulled into
//! the host's image store (`aloft-image`) while the machine object shows the pull's progress,
//! the process to run and the platform's environment, and the host's image list and prune.
//!
//! - **Credentials.** The control plane forwards the caller's own org API token with every
//!   machine request (`x-aloft-registry-token`). The agent uses it in memory, for the pulls that
//!   request triggers (create's launch, start, restart, update), and never stores it. The token
//!   goes only to aloft's own registry (`AgentConfig::registry`): an image on any other registry
//!   is pulled with the org's stored login for exactly that registry host (`aloft registry
//!   login`, asked of the control plane for that pull and never kept), or anonymously when the
//!   org stored none, so an image reference cannot hand the org's token (or its login for
//!   another registry) to a registry the tenant runs. A deploy token's pulls use the org's
//!   logins too: they are the org's, and the deploy token cannot read or change them.
//!   Starts the agent makes on its own (restart policy, finishing an operation after an agent
//!   restart) have no token: they use the image the record is pinned to, if it is still on the
//!   host, and nothing else (not an image found by name or by a
//!   digest nobody checked the org may read); otherwise the machine fails with an event saying
//!   to start it again, which brings a token.
//! - **Pinning.** Once a version's image is pulled, the record names it by manifest digest
//!   (`image_ref`), written before the machine starts. Later starts of that version use that
//!   digest, so the image a version runs never changes behind its back (a tag pushed again is
//!   picked up by an update, which makes a new version). A digest already on the host is
//!   reused without a download, once the registry let the caller's credentials read it (the
//!   image store checks with a `HEAD` the first time those credentials ask).
//! - **Prune** keeps every image a machine that is not destroyed names, and every image a pull
//!   holds pinned ([`aloft_image::Pinned`]) from its start until the record names it: pulls and
//!   prunes never wait for each other, so a slow pull stalls no prune and a prune no start.
//!
//! State: the host's image store (`AgentConfig::images`, on disk) and each machine's pull in
//! progress (in its slot, memory only). Pulls for an operation run under that machine's lock.

use crate::agent::Agent;
use crate::machine::slot::{Locked, Slot};
use crate::store::Record;
use aloft_image::{
    Credentials, Image, ImageError, ImageProcess, ImageStore, Pinned, PullPhase, PullProgress,
    Reference,
};
use aloft_runtime::PreparedImage;
use aloft_types::api::{HostImage, PruneImagesResponse};
use aloft_types::machine::{ImagePull, ImagePullPhase, ImageRef};
use aloft_types::{ApiError, MachineConfig, MachineState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The username sent with an org token (aloft's registry reads only the password).
const REGISTRY_USER: &str = "aloft";

/// Registry credentials for an org API token.
pub(crate) fn credentials(token: &str) -> Credentials {
    Credentials::Basic {
        username: REGISTRY_USER.to_string(),
        password: token.to_string(),
    }
}

/// Why a machine's image is not ready to run.
#[derive(Debug)]
pub(crate) enum ImageFailure {
    /// `config.image` is not an image reference.
    Reference(ImageError),
    /// Pulling the image failed.
    Pull {
        reference: String,
        error: ImageError,
        /// The registry host, when it is not aloft's own (its credentials are the org's
        /// stored login for it).
        third_party: Option<String>,
    },
    /// The org's login for the image's registry could not be asked of the control plane (the
    /// cause is logged: it names the control plane's address).
    Login { reference: String },
    /// The image is not on this host and this start, made by the agent itself, has no registry
    /// credentials to pull it.
    NotCached { reference: String },
    /// Neither the image nor the machine config says what to run.
    Process(ImageError),
    /// The record naming the image could not be written.
    Store(ApiError),
}

impl ImageFailure {
    /// A sentence for the machine's event: what went wrong and what to do.
    pub fn message(&self, rec: &Record) -> String {
        let start = format!("aloft machine start {} -a {}", rec.id, rec.app);
        match self {
            ImageFailure::Reference(e) => format!("config.image: {e}"),
            ImageFailure::Pull {
                reference,
                error,
                third_party,
            } => {
                let hint = match error {
                    ImageError::Unauthorized { .. } if third_party.is_some() => format!(
                        "; images on {host} are pulled with the org's login for that host: store one with `aloft registry login {host} --username USER --password-stdin` (one that may read this repository)",
                        host = third_party.as_deref().unwrap_or_default()
                    ),
                    ImageError::NotFound { .. } => format!(
                        "; push it first (e.g. `skopeo copy oci:DIR:TAG docker://{reference}`) or give the machine an image that exists"
                    ),
                    ImageError::Unauthorized { .. } => "; images are pulled with the org token of the request that starts the machine, so the image must be in that org's repositories".to_string(),
                    ImageError::RegistryUnavailable { .. } => {
                        format!("; once it answers, start the machine again (`{start}`)")
                    }
                    _ => String::new(),
                };
                format!("pulling image {reference} failed: {error}{hint}")
            }
            ImageFailure::Login { reference } => format!(
                "pulling image {reference} needs the org's login for its registry, and the control plane did not answer: start the machine again once it does (`{start}`)"
            ),
            ImageFailure::NotCached { reference } => format!(
                "image {reference} is not on this host (it was pruned, or never pulled) and this start has no registry credentials to pull it (restarts the agent makes by itself have none): start the machine yourself (`{start}`), which pulls it with your org token"
            ),
            ImageFailure::Process(e) => e.to_string(),
            ImageFailure::Store(e) => format!("recording the machine's image failed: {e}"),
        }
    }

    /// The error for a request that waits for the image (update): the config names an image
    /// that cannot be used (422), the registry does not answer (503), or the host failed (500).
    pub fn into_api_error(self, rec: &Record) -> ApiError {
        let message = self.message(rec);
        match self {
            ImageFailure::Reference(_) | ImageFailure::NotCached { .. } => {
                ApiError::invalid("config.image", message)
            }
            ImageFailure::Process(_) => ApiError::invalid("config.init", message),
            ImageFailure::Store(e) => e,
            ImageFailure::Login { .. } => ApiError::Unavailable(message),
            ImageFailure::Pull { error, .. } => match error {
                ImageError::RegistryUnavailable { .. }
                | ImageError::RegistryStatus { .. }
                | ImageError::Interrupted { .. } => ApiError::Unavailable(message),
                ImageError::Io { .. }
                | ImageError::DiskFull { .. }
                | ImageError::ToolMissing { .. }
                | ImageError::ToolFailed { .. }
                | ImageError::InvalidConfig { .. }
                | ImageError::ImageNotFound { .. } => ApiError::Internal(message),
                _ => ApiError::invalid("config.image", message),
            },
        }
    }
}

/// Shows the progress of a pull on its machine while it lives.
struct Shown(Arc<Slot>);

impl Drop for Shown {
    fn drop(&mut self) {
        self.0.set_pull(None);
    }
}

fn pull_json(p: &PullProgress) -> ImagePull {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    ImagePull {
        phase: match p.phase {
            PullPhase::Resolving => ImagePullPhase::Resolving,
            PullPhase::Fetching => ImagePullPhase::Fetching,
            PullPhase::Assembling => ImagePullPhase::Assembling,
            PullPhase::Done => ImagePullPhase::Done,
        },
        layers_total: count(p.layers_total),
        layers_done: count(p.layers_done),
        layers_cached: count(p.layers_cached),
        bytes_total: p.bytes_total,
        bytes_fetched: p.bytes_fetched,
    }
}

/// `registry/repository[:tag]@digest`.
fn image_ref_string(r: &ImageRef) -> String {
    let tag = if r.tag.is_empty() {
        String::new()
    } else {
        format!(":{}", r.tag)
    };
    format!("{}/{}{tag}@{}", r.registry, r.repository, r.digest)
}

/// The variables the platform sets in every machine, as the reference platform does
/// (`FLY_APP_NAME`, `FLY_MACHINE_ID`, `FLY_REGION`, `FLY_PRIVATE_IP`, `FLY_MACHINE_VERSION`,
/// `FLY_IMAGE_REF`, `PRIMARY_REGION`), and the same with an `ALOFT_` prefix. They go on top of the image's and
/// the machine's `env` (the platform has the last word on who the machine is), into the process
/// every backend gets ([`PreparedImage::process`]).
pub(crate) fn platform_env(rec: &Record) -> BTreeMap<String, String> {
    let mut vars = vec![
        ("APP_NAME", rec.app.clone()),
        ("MACHINE_ID", rec.id.to_string()),
        ("REGION", rec.region.clone()),
        ("PRIVATE_IP", rec.private_ip.clone()),
        ("MACHINE_VERSION", rec.instance_id.to_string()),
    ];
    // PRIMARY_REGION is the app's to set (fly.toml's `primary_region` puts it in `env`); without
    // one, the machine's own region is the primary.
    let primary = rec
        .config
        .env
        .get("PRIMARY_REGION")
        .cloned()
        .unwrap_or_else(|| rec.region.clone());
    if let Some(r) = &rec.image_ref {
        vars.push(("IMAGE_REF", image_ref_string(r)));
    }
    let mut env: BTreeMap<String, String> = ["FLY_", "ALOFT_"]
        .into_iter()
        .flat_map(|prefix| {
            vars.iter()
                .map(move |(name, value)| (format!("{prefix}{name}"), value.clone()))
        })
        .collect();
    env.insert("PRIMARY_REGION".into(), primary.clone());
    env.insert("ALOFT_PRIMARY_REGION".into(), primary);
    env
}

fn store_error(e: ImageError) -> ApiError {
    ApiError::Internal(format!("the host's image store failed: {e}"))
}

impl Agent {
    /// 422 naming `config.image` when it is not an image reference (only when this agent pulls
    /// images: without, any string is accepted, as the sim runtime runs no image).
    pub(crate) fn check_image(&self, config: &MachineConfig, org: &str) -> Result<(), ApiError> {
        if self.config().images.is_none() {
            return Ok(());
        }
        self.reference(&config.image, org)
            .map(drop)
            .map_err(|e| ApiError::invalid("config.image", format!("config.image: {e}")))
    }

    /// A machine's `image_ref` before its version's image is pulled: `config.image` resolved
    /// against this host's registry (no digest yet, unless the reference names one), or split
    /// as written when this agent pulls no images.
    pub(crate) fn unpulled_image_ref(&self, rec: &Record) -> ImageRef {
        let resolved = self
            .config()
            .images
            .as_ref()
            .and_then(|_| self.reference(&rec.config.image, &rec.org).ok());
        match resolved {
            Some(r) => ImageRef {
                registry: r.registry,
                repository: r.repository,
                tag: r.tag.unwrap_or_default(),
                digest: r.digest.unwrap_or_default(),
            },
            None => ImageRef::parse(&rec.config.image),
        }
    }

    fn reference(&self, image: &str, org: &str) -> Result<Reference, ImageError> {
        Reference::parse(image, &self.config().registry, org)
    }

    /// The image of the machine's current version, ready on this host, and the process to run
    /// (`Ok(None)` when this agent pulls no images). The first pull of a version pins it: the
    /// record names the image's digest before this returns. `creds` are those of the request
    /// that starts the machine, if a request does.
    pub(crate) async fn prepare_image(
        &self,
        m: &mut Locked,
        creds: Option<&Credentials>,
    ) -> Result<Option<PreparedImage>, ImageFailure> {
        let Some(store) = &self.config().images else {
            return Ok(None);
        };
        let pinned = m.rec.image_ref.as_ref().filter(|r| !r.digest.is_empty());
        let (reference, tag) = match pinned {
            Some(r) => (
                Reference {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    tag: None,
                    digest: Some(r.digest.clone()),
                },
                r.tag.clone(),
            ),
            None => {
                let r = self
                    .reference(&m.rec.config.image, &m.rec.org)
                    .map_err(ImageFailure::Reference)?;
                let tag = r.tag.clone().unwrap_or_default();
                (r, tag)
            }
        };
        // Held until the record names the image and its ext4 image is built.
        let (image, _in_use) = self
            .fetch(
                store,
                &m.slot,
                &reference,
                &m.rec.org,
                creds,
                pinned.is_some(),
            )
            .await?;
        let image_ref = ImageRef {
            registry: reference.registry,
            repository: reference.repository,
            tag,
            digest: image.manifest_digest.clone(),
        };
        if m.rec.image_ref.as_ref() != Some(&image_ref) {
            m.rec.image_ref = Some(image_ref);
            let state = m.rec.state;
            self.save(m, state, Vec::new())
                .map_err(ImageFailure::Store)?;
        }
        let mut process = image
            .config
            .process(&m.rec.config)
            .map_err(ImageFailure::Process)?;
        process.env.extend(platform_env(&m.rec));
        let disk = if self.any_runtime().capabilities().disk_image {
            Some(
                store
                    .ext4(&image)
                    .await
                    .map_err(|error| ImageFailure::Pull {
                        reference: image_ref_string(m.rec.image_ref.as_ref().expect("set above")),
                        error,
                        third_party: None,
                    })?,
            )
        } else {
            None
        };
        Ok(Some(PreparedImage {
            manifest_digest: image.manifest_digest,
            rootfs: image.rootfs,
            process,
            disk,
        }))
    }

    /// An update's new image, pulled before anything about the machine changes (so a pull that
    /// fails leaves the machine as it is), and checked to say what to run. Returns what the new
    /// version's record names (`None` when this agent pulls no images), and the image's pin,
    /// which the caller holds until it has written that.
    pub(crate) async fn pull_for_update(
        &self,
        m: &Locked,
        config: &MachineConfig,
        creds: Option<&Credentials>,
    ) -> Result<Option<(ImageRef, Pinned)>, ImageFailure> {
        let Some(store) = &self.config().images else {
            return Ok(None);
        };
        let reference = self
            .reference(&config.image, &m.rec.org)
            .map_err(ImageFailure::Reference)?;
        let (image, pinned) = self
            .fetch(store, &m.slot, &reference, &m.rec.org, creds, false)
            .await?;
        image
            .config
            .process(config)
            .map_err(ImageFailure::Process)?;
        Ok(Some((image.image_ref(), pinned)))
    }

    /// Pulls `reference`, or finds it on this host, showing the progress on the machine. The
    /// image the machine's record is `pinned` to (pulled for it before, with its caller's
    /// credentials) is used from the host without asking the registry. Anything else needs
    /// credentials and the registry's word: never an image by a name or digest nobody has
    /// checked this machine's org may read.
    async fn fetch(
        &self,
        store: &ImageStore,
        slot: &Arc<Slot>,
        reference: &Reference,
        org: &str,
        creds: Option<&Credentials>,
        pinned: bool,
    ) -> Result<(Image, Pinned), ImageFailure> {
        let shown = Shown(slot.clone());
        let progress = |p: PullProgress| shown.0.set_pull(Some(pull_json(&p)));
        let third_party =
            (!self.own_registry(reference)).then(|| reference.registry.to_ascii_lowercase());
        let failed = |error| ImageFailure::Pull {
            reference: reference.to_string(),
            error,
            third_party: third_party.clone(),
        };
        // The image a record is pinned to was pulled (access checked) for this machine's org:
        // while it is on the host it needs no registry (which may have moved or be down).
        if pinned {
            match store.on_host(reference, &progress).await {
                Err(ImageError::ImageNotFound { .. }) => {}
                r => return r.map_err(failed),
            }
        }
        let Some(org_creds) = creds else {
            return Err(ImageFailure::NotCached {
                reference: reference.to_string(),
            });
        };
        let creds = match &third_party {
            None => org_creds.clone(),
            Some(host) => {
                self.registry_login(org, host)
                    .await
                    .map_err(|error| {
                        tracing::warn!(%reference, %error, "cannot ask the control plane for the org's registry login");
                        ImageFailure::Login {
                            reference: reference.to_string(),
                        }
                    })?
            }
        };
        store
            .pull_pinned(reference, &creds, progress)
            .await
            .map_err(failed)
    }

    /// Whether `reference` names aloft's own registry (the only one the org token goes to).
    fn own_registry(&self, reference: &Reference) -> bool {
        reference
            .registry
            .eq_ignore_ascii_case(&self.config().registry)
    }

    /// The credentials a pull from the third-party registry `host` gets: the org's stored login
    /// for exactly that host, or none (anonymous).
    async fn registry_login(&self, org: &str, host: &str) -> Result<Credentials, String> {
        Ok(match self.secrets().registry_login(org, host).await? {
            Some(login) => Credentials::Basic {
                username: login.username,
                password: login.password,
            },
            None => Credentials::None,
        })
    }

    /// `GET /internal/v1/images`: the images on this host and the machines that use them.
    pub(crate) async fn list_images(&self) -> Result<Vec<HostImage>, ApiError> {
        let Some(store) = &self.config().images else {
            return Ok(Vec::new());
        };
        let mut users = self.image_users()?;
        let images = store.list().await.map_err(store_error)?;
        Ok(images
            .into_iter()
            .map(|i| HostImage {
                machines: users.remove(&i.manifest_digest).unwrap_or_default(),
                manifest_digest: i.manifest_digest,
                references: i.references,
                layers: i.layers,
                unpacked_bytes: i.unpacked_bytes,
                created_at: i.created_at,
                rootfs: i.rootfs.display().to_string(),
                ext4: i.ext4.map(|p| p.display().to_string()),
            })
            .collect())
    }

    /// `POST /internal/v1/images/prune`: removes every image no machine (that is not destroyed)
    /// names, and the layers only they used.
    pub(crate) async fn prune_images(&self) -> Result<PruneImagesResponse, ApiError> {
        let Some(store) = &self.config().images else {
            return Ok(PruneImagesResponse::default());
        };
        let keep: Vec<String> = self.image_users()?.into_keys().collect();
        let on_host: BTreeSet<String> = store
            .list()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|i| i.manifest_digest)
            .collect();
        let report = store.prune(&keep).await.map_err(store_error)?;
        Ok(PruneImagesResponse {
            images_kept: keep.into_iter().filter(|d| on_host.contains(d)).collect(),
            images_removed: report.images_removed,
            ext4_removed: report.ext4_removed,
            layers_removed: report.layers_removed,
            bytes_freed: report.bytes_freed,
        })
    }

    /// Manifest digest -> the machines (not destroyed) whose current version names it.
    fn image_users(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rec in self.store().list()? {
            if rec.state == MachineState::Destroyed {
                continue;
            }
            if let Some(r) = rec.image_ref.filter(|r| !r.digest.is_empty()) {
                users.entry(r.digest).or_default().push(rec.id.to_string());
            }
        }
        Ok(users)
    }
}
