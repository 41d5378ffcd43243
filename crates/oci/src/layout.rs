//! Writing OCI image layouts with no network: aloft's own test images (Debian's static busybox,
//! a static example binary) and the base of `aloft image build`.
//!
//! A layout is a directory with `oci-layout`, `index.json` (one entry per tag, named by the
//! `org.opencontainers.image.ref.name` annotation) and `blobs/sha256/*`. Writing a second image
//! into the same directory adds (or replaces) its tag and shares identical blobs. Output is
//! reproducible: the same input gives the same digests (entries get a fixed mtime, owner root).

use crate::defaults::{DEFAULT_PATH, ImageDefaults};
use crate::digest::Digest;
use crate::manifest::{ConfigFile, Descriptor, Index, Manifest, Platform, RootFs};
use crate::media_type::{Compression, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a layout could not be written. The image pipeline turns each variant into its own
/// error of the same name and sentence.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A filesystem operation (or an encoding) failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The layout's `index.json` is not an index.
    #[error("invalid manifest for {reference}: {detail}")]
    InvalidIndex { reference: String, detail: String },
    /// An external tool is not installed.
    #[error("{tool} was not found: install it with `apt-get install {package}`")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    /// An external tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        stderr: String,
    },
}

impl LayoutError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LayoutError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The mtime of entries built from [`LayerEntry`] values (2023-11-14).
const FIXED_MTIME: u64 = 1_700_000_000;

/// One entry of a layer built in memory. Paths are relative to the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A directory.
    Dir { path: String, mode: u32 },
    /// A regular file.
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    /// A symlink (the target is stored as is).
    Symlink { path: String, target: String },
    /// A hard link to a file earlier in the same layer.
    Hardlink { path: String, target: String },
}

impl LayerEntry {
    pub fn dir(path: &str, mode: u32) -> LayerEntry {
        LayerEntry::Dir {
            path: path.into(),
            mode,
        }
    }

    pub fn file(path: &str, data: impl Into<Vec<u8>>, mode: u32) -> LayerEntry {
        LayerEntry::File {
            path: path.into(),
            data: data.into(),
            mode,
        }
    }

    pub fn symlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    pub fn hardlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry::Hardlink {
            path: path.into(),
            target: target.into(),
        }
    }
}

#[derive(Debug, Clone)]
enum LayerSource {
    Entries(Vec<LayerEntry>),
    Dir(PathBuf),
    Tar(Vec<u8>),
}

/// Builds an image into an OCI layout.
///
/// ```no_run
/// # fn f() -> Result<(), aloft_oci::layout::LayoutError> {
/// use aloft_oci::{ImageDefaults, layout::{LayerEntry, LayoutBuilder}};
/// let image = LayoutBuilder::new()
///     .layer(vec![LayerEntry::file("app/server", std::fs::read("target/server").unwrap(), 0o755)])
///     .config(ImageDefaults { cmd: vec!["/app/server".into()], ..Default::default() })
///     .write(std::path::Path::new("/tmp/layout"), "v1")?;
/// println!("{}", image.manifest_digest);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LayoutBuilder {
    layers: Vec<LayerSource>,
    compression: Compression,
    config: ImageDefaults,
}

impl Default for LayoutBuilder {
    fn default() -> Self {
        LayoutBuilder::new()
    }
}

/// What [`LayoutBuilder::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutImage {
    pub manifest_digest: String,
    pub config_digest: String,
    /// Compressed layer digests, bottom first.
    pub layers: Vec<String>,
}

impl LayoutBuilder {
    /// An image with no layers, gzip compression and an empty config.
    pub fn new() -> LayoutBuilder {
        LayoutBuilder {
            layers: Vec::new(),
            compression: Compression::Gzip,
            config: ImageDefaults::default(),
        }
    }

    /// How layers are compressed (default gzip).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The run settings (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts).
    pub fn config(mut self, config: ImageDefaults) -> Self {
        self.config = config;
        self
    }

    /// A layer of in-memory entries (mtime fixed, owner root).
    pub fn layer(mut self, entries: Vec<LayerEntry>) -> Self {
        self.layers.push(LayerSource::Entries(entries));
        self
    }

    /// A layer with the content of `dir` (modes and mtimes kept, owner root, symlinks stored as
    /// symlinks, hard links as hard links).
    pub fn layer_from_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.layers.push(LayerSource::Dir(dir.into()));
        self
    }

    /// A layer from a ready-made, uncompressed tar stream, used as is.
    pub fn layer_tar(mut self, tar: Vec<u8>) -> Self {
        self.layers.push(LayerSource::Tar(tar));
        self
    }

    /// Writes the image into the layout at `dir` (created if needed) under `tag`.
    pub fn write(&self, dir: &Path, tag: &str) -> Result<LayoutImage, LayoutError> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| LayoutError::io("create directory", &blobs, e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_file(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for source in &self.layers {
            let tar = match source {
                LayerSource::Entries(entries) => tar_of_entries(entries)?,
                LayerSource::Dir(d) => tar_of_dir(d)?,
                LayerSource::Tar(t) => t.clone(),
            };
            diff_ids.push(Digest::of(&tar).into_string());
            let blob = compress(&tar, self.compression)?;
            layers.push(write_blob(dir, &blob, self.compression.layer_media_type())?);
        }
        let config = ConfigFile {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: Some(self.config.to_config()),
            rootfs: Some(RootFs {
                kind: "layers".into(),
                diff_ids,
            }),
        };
        let config_desc = write_blob(dir, &to_json(&config)?, OCI_CONFIG)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: config_desc.clone(),
            layers: layers.clone(),
        };
        let mut manifest_desc = write_blob(dir, &to_json(&manifest)?, OCI_MANIFEST)?;
        manifest_desc.platform = Some(Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        });
        manifest_desc
            .annotations
            .insert(REF_NAME.to_string(), tag.to_string());

        let index_path = dir.join("index.json");
        let mut index = match fs::read(&index_path) {
            Ok(bytes) => {
                serde_json::from_slice::<Index>(&bytes).map_err(|e| LayoutError::InvalidIndex {
                    reference: index_path.display().to_string(),
                    detail: e.to_string(),
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: Vec::new(),
            },
            Err(e) => return Err(LayoutError::io("read", &index_path, e)),
        };
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        index.manifests.push(manifest_desc.clone());
        write_file(&index_path, &to_json(&index)?)?;
        Ok(LayoutImage {
            manifest_digest: manifest_desc.digest,
            config_digest: config_desc.digest,
            layers: layers.into_iter().map(|d| d.digest).collect(),
        })
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<Vec<u8>, LayoutError> {
    serde_json::to_vec(v).map_err(|e| LayoutError::io("encode", "<json>", io::Error::other(e)))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    fs::write(path, bytes).map_err(|e| LayoutError::io("write", path, e))
}

fn write_blob(layout: &Path, bytes: &[u8], media_type: &str) -> Result<Descriptor, LayoutError> {
    let digest = Digest::of(bytes).into_string();
    let path = layout
        .join("blobs")
        .join("sha256")
        .join(&digest["sha256:".len()..]);
    if !path.exists() {
        write_file(&path, bytes)?;
    }
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest,
        size: bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    })
}

fn compress(tar: &[u8], c: Compression) -> Result<Vec<u8>, LayoutError> {
    Ok(match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let encoded = enc.write_all(tar).and_then(|()| enc.finish());
            encoded.map_err(|e| LayoutError::io("compress", "<layer>", e))?
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest)
        }
    })
}

fn tar_error(path: &str, e: io::Error) -> LayoutError {
    LayoutError::io("add to a layer", path, e)
}

fn header(kind: tar::EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h
}

fn tar_of_entries(entries: &[LayerEntry]) -> Result<Vec<u8>, LayoutError> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            LayerEntry::Dir { path, mode } => {
                let mut h = header(T::Directory, *mode, FIXED_MTIME, 0);
                b.append_data(&mut h, path, io::empty())
                    .map_err(|e| tar_error(path, e))?;
            }
            LayerEntry::File { path, data, mode } => {
                let mut h = header(T::Regular, *mode, FIXED_MTIME, data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())
                    .map_err(|e| tar_error(path, e))?;
            }
            LayerEntry::Symlink { path, target } => {
                let mut h = header(T::Symlink, 0o777, FIXED_MTIME, 0);
                b.append_link(&mut h, path, target)
                    .map_err(|e| tar_error(path, e))?;
            }
            LayerEntry::Hardlink { path, target } => {
                let mut h = header(T::Link, 0o644, FIXED_MTIME, 0);
                b.append_link(&mut h, path, target)
                    .map_err(|e| tar_error(path, e))?;
            }
        }
    }
    b.into_inner().map_err(|e| tar_error("<end>", e))
}

fn tar_of_dir(root: &Path) -> Result<Vec<u8>, LayoutError> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    let mut seen: HashMap<(u64, u64), String> = HashMap::new();
    // depth first, siblings in name order (the stack holds them reversed)
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let m = fs::symlink_metadata(&path).map_err(|e| LayoutError::io("inspect", &path, e))?;
        if m.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&path)
                .map_err(|e| LayoutError::io("read directory", &path, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| LayoutError::io("read directory", &path, e))?;
            names.sort();
            stack.extend(names.into_iter().rev().map(|n| rel.join(n)));
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel.to_string_lossy().into_owned();
        let mode = m.mode() & 0o7777;
        let mtime = u64::try_from(m.mtime()).unwrap_or(0);
        if m.is_dir() {
            let mut h = header(T::Directory, mode, mtime, 0);
            b.append_data(&mut h, &name, io::empty())
                .map_err(|e| tar_error(&name, e))?;
        } else if m.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| LayoutError::io("read", &path, e))?;
            let mut h = header(T::Symlink, mode, mtime, 0);
            b.append_link(&mut h, &name, &target)
                .map_err(|e| tar_error(&name, e))?;
        } else if m.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = seen.get(&(m.dev(), m.ino())) {
                    let mut h = header(T::Link, mode, mtime, 0);
                    b.append_link(&mut h, &name, first)
                        .map_err(|e| tar_error(&name, e))?;
                    continue;
                }
                seen.insert((m.dev(), m.ino()), name.clone());
            }
            let file = fs::File::open(&path).map_err(|e| LayoutError::io("open", &path, e))?;
            let mut h = header(T::Regular, mode, mtime, m.len());
            b.append_data(&mut h, &name, file)
                .map_err(|e| tar_error(&name, e))?;
        } else {
            return Err(LayoutError::io(
                "add to a layer",
                path,
                io::Error::other("sockets, fifos and devices are not put into images"),
            ));
        }
    }
    b.into_inner().map_err(|e| tar_error("<end>", e))
}

/// Where Debian's `busybox-static` puts its binary.
fn find_busybox() -> Result<PathBuf, LayoutError> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(LayoutError::ToolMissing {
            tool: "busybox",
            package: "busybox-static",
        })?;
    let bytes = fs::read(&path).map_err(|e| LayoutError::io("read", &path, e))?;
    // a dynamically linked busybox (Debian's `busybox` package) names its loader near the start
    let head = &bytes[..bytes.len().min(4096)];
    if head.windows(7).any(|w| w == b"ld-linu") {
        return Err(LayoutError::ToolMissing {
            tool: "a statically linked busybox",
            package: "busybox-static",
        });
    }
    Ok(path)
}

/// The entries of a busybox root filesystem: Debian's static `/bin/busybox` (package
/// `busybox-static`), a symlink `/bin/<applet> -> busybox` for every applet (`/bin/sh`
/// included), `/etc/passwd` and `/etc/group` with root and nobody, and the usual directories
/// (`/tmp` 1777, `/root` 0700, empty `/proc`, `/sys`, `/dev` mount points).
pub fn busybox_entries() -> Result<Vec<LayerEntry>, LayoutError> {
    let path = find_busybox()?;
    let binary = fs::read(&path).map_err(|e| LayoutError::io("read", &path, e))?;
    let output = std::process::Command::new(&path)
        .arg("--list")
        .output()
        .map_err(|e| LayoutError::io("run", &path, e))?;
    if !output.status.success() {
        return Err(LayoutError::ToolFailed {
            tool: "busybox",
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let mut entries = vec![
        LayerEntry::dir("bin", 0o755),
        LayerEntry::dir("dev", 0o755),
        LayerEntry::dir("etc", 0o755),
        LayerEntry::dir("proc", 0o555),
        LayerEntry::dir("root", 0o700),
        LayerEntry::dir("sys", 0o555),
        LayerEntry::dir("tmp", 0o1777),
        LayerEntry::dir("var", 0o755),
        LayerEntry::file("bin/busybox", binary, 0o755),
        LayerEntry::file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        LayerEntry::file("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
    ];
    let list = String::from_utf8_lossy(&output.stdout);
    let mut applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .collect();
    applets.sort_unstable();
    applets.dedup();
    entries.extend(
        applets
            .into_iter()
            .map(|a| LayerEntry::symlink(&format!("bin/{a}"), "busybox")),
    );
    Ok(entries)
}

/// Writes a one-layer busybox image (see [`busybox_entries`]) with `Entrypoint ["/bin/sh"]`
/// into the layout at `dir` under `tag`.
pub fn build_busybox_layout(dir: &Path, tag: &str) -> Result<LayoutImage, LayoutError> {
    LayoutBuilder::new()
        .layer(busybox_entries()?)
        .config(busybox_config())
        .write(dir, tag)
}

/// The run settings of the busybox image: `Entrypoint ["/bin/sh"]`, the default `PATH`.
pub fn busybox_config() -> ImageDefaults {
    ImageDefaults {
        entrypoint: vec!["/bin/sh".into()],
        env: vec![format!("PATH={DEFAULT_PATH}")],
        ..ImageDefaults::default()
    }
}
