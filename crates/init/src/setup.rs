//! Setting the machine up before its process starts: the filesystems a Linux program expects,
//! hostname, `/etc/hosts`, `/etc/resolv.conf`, and the files from `config.files`.

use aloft_types::init::{InitConfig, InitFile};
use base64::Engine;
use rustix::mount::{MountFlags, mount};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Mounts what is missing (`/proc`, `/sys`, `/dev`, `/dev/pts`, `/dev/shm`, `/run`; in gVisor
/// the sandbox has most of them already), hostname, hosts and resolv.conf.
pub fn system(cfg: &InitConfig) -> Result<(), String> {
    mount_missing();
    rustix::system::sethostname(cfg.hostname.as_bytes())
        .map_err(|e| format!("cannot set the hostname: {e}"))?;
    write_hosts(cfg, Path::new("/etc/hosts")).map_err(|e| format!("writing /etc/hosts: {e}"))?;
    if !cfg.nameservers.is_empty() {
        // The image's file may be a symlink (to systemd-resolved's): replace it, not its target.
        let _ = fs::remove_file("/etc/resolv.conf");
        fs::write("/etc/resolv.conf", resolv_conf(cfg))
            .map_err(|e| format!("writing /etc/resolv.conf: {e}"))?;
    }
    Ok(())
}

/// `/etc/resolv.conf` for `cfg`'s name servers and search domains.
pub fn resolv_conf(cfg: &InitConfig) -> String {
    let mut text = String::new();
    if !cfg.dns_searches.is_empty() {
        text.push_str(&format!("search {}\n", cfg.dns_searches.join(" ")));
    }
    for n in &cfg.nameservers {
        text.push_str(&format!("nameserver {n}\n"));
    }
    text
}

/// Mounts each standard filesystem whose mount point is not a mount yet. Failures are printed,
/// not fatal: a process may well run without `/dev/shm`.
pub fn mount_missing() {
    let mounts: [(&str, &str, &str, MountFlags, &str); 6] = [
        (
            "proc",
            "/proc",
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            "",
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            "",
        ),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "mode=0620,ptmxmode=0666",
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "run",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
    ];
    let mounted = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for (source, target, fstype, flags, data) in mounts {
        if mounted
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(target))
        {
            continue;
        }
        let _ = fs::create_dir_all(target);
        let data = std::ffi::CString::new(data).expect("no NUL");
        if let Err(e) = mount(source, target, fstype, flags, Some(data.as_c_str())) {
            eprintln!("aloft-init: cannot mount {fstype} on {target}: {e}");
        }
    }
}

/// `/etc/hosts`: the image's lines, then localhost and the machine's own names.
pub fn write_hosts(cfg: &InitConfig, path: &Path) -> io::Result<()> {
    let existing = fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for line in existing.lines() {
        out.push_str(line);
        out.push('\n');
    }
    let has = |addr: &str| {
        existing
            .lines()
            .any(|l| l.split_whitespace().next() == Some(addr))
    };
    if !has("127.0.0.1") {
        out.push_str("127.0.0.1\tlocalhost\n");
    }
    if !has("::1") {
        out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    }
    for e in &cfg.hosts {
        out.push_str(&format!("{}\t{}\n", e.address, e.names.join(" ")));
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, out)
}

/// Writes `config.files` under `root`, creating parent directories.
pub fn write_files(files: &[InitFile], root: &Path) -> Result<(), String> {
    for f in files {
        let rel = f.path.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            return Err(format!(
                "{}: not an absolute path inside the machine",
                f.path
            ));
        }
        let content = base64::engine::general_purpose::STANDARD
            .decode(&f.content_base64)
            .map_err(|e| format!("{}: content is not base64: {e}", f.path))?;
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", f.path))?;
        }
        fs::write(&path, content).map_err(|e| format!("{}: {e}", f.path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode.unwrap_or(0o644)))
            .map_err(|e| format!("{}: {e}", f.path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::init::{HostsEntry, InitProcess};

    fn cfg() -> InitConfig {
        InitConfig {
            machine_id: "m1".into(),
            app: "a".into(),
            region: "local".into(),
            hostname: "m1".into(),
            process: InitProcess {
                argv: vec!["/bin/true".into()],
                env: Default::default(),
                working_dir: "/".into(),
                user: String::new(),
            },
            files: vec![],
            hosts: vec![HostsEntry {
                address: "fdaa::2".into(),
                names: vec!["m1".into(), "fly-local-6pn".into()],
            }],
            nameservers: vec![],
            dns_searches: vec![],
            network: None,
            vm: None,
        }
    }

    #[test]
    fn resolv_conf_has_the_searches_then_the_name_servers() {
        let mut c = cfg();
        c.nameservers = vec!["10.0.0.2".into(), "2001:db8::53".into()];
        c.dns_searches = vec!["corp.example".into()];
        assert_eq!(
            resolv_conf(&c),
            "search corp.example\nnameserver 10.0.0.2\nnameserver 2001:db8::53\n"
        );
    }

    #[test]
    fn hosts_keep_the_image_lines_and_add_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/hosts");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "127.0.0.1 localhost\n10.0.0.1 db\n").unwrap();
        write_hosts(&cfg(), &p).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("127.0.0.1 localhost\n10.0.0.1 db\n"),
            "{text}"
        );
        assert_eq!(text.matches("127.0.0.1").count(), 1);
        assert!(text.contains("::1\tlocalhost"));
        assert!(text.contains("fdaa::2\tm1 fly-local-6pn"));
    }

    #[test]
    fn files_are_written_with_their_mode_and_never_outside() {
        let dir = tempfile::tempdir().unwrap();
        let f = |path: &str| InitFile {
            path: path.into(),
            content_base64: "aGk=".into(),
            mode: Some(0o600),
        };
        write_files(&[f("/etc/app/conf")], dir.path()).unwrap();
        let p = dir.path().join("etc/app/conf");
        assert_eq!(fs::read_to_string(&p).unwrap(), "hi");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_files(&[f("/../escape")], dir.path()).is_err());
        let mut bad = f("/x");
        bad.content_base64 = "!!".into();
        assert!(
            write_files(&[bad], dir.path())
                .unwrap_err()
                .contains("base64")
        );
    }
}
