//! The machine's process as the config describes it: environment, user, working directory and
//! the program found on `PATH`. Shared by the main process and `aloft-init exec`, so an exec'd
//! command gets exactly the main process's environment.

use aloft_types::init::InitProcess;
use rustix::process::{Gid, Uid};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user resolved against the image's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    /// Supplementary groups: the image's `/etc/group` entries that list the user by name.
    pub groups: Vec<u32>,
}

/// Resolves `user`, `uid`, `user:group` or `uid:gid` under `root` (`/` in a machine).
pub fn resolve_user(spec: &str, root: &Path) -> Result<User, String> {
    let root_user = User {
        uid: 0,
        gid: 0,
        home: "/root".into(),
        groups: Vec::new(),
    };
    if spec.is_empty() {
        return Ok(root_user);
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && (f[0] == user || f[2] == user)).then(|| {
            (
                f[0].to_string(),
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
                f[5].to_string(),
            )
        })
    });
    let group_file = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    // -1 means "unchanged" to the kernel's set*id calls: never a user or group.
    let valid = |id: u32| (id != u32::MAX).then_some(id);
    let mut resolved = match (entry, user.parse::<u32>().ok().and_then(valid)) {
        (Some((name, Some(uid), Some(gid), home)), _) if valid(uid).and(valid(gid)).is_some() => {
            User {
                uid,
                gid,
                home,
                groups: member_of(&group_file, &name),
            }
        }
        // As Docker and runc do: a uid the image does not know runs with gid 0.
        (_, Some(uid)) => User {
            uid,
            gid: 0,
            home: "/".into(),
            groups: Vec::new(),
        },
        // An image without /etc/passwd (FROM scratch) runs as root by default: the platform
        // writes that default as `root`.
        _ if user == "root" => root_user,
        _ => {
            return Err(format!(
                "user `{user}` is not in the image's /etc/passwd; use a numeric uid or add the user to the image"
            ));
        }
    };
    if let Some(group) = group {
        resolved.gid = match group.parse::<u32>().ok().and_then(valid) {
            Some(gid) => gid,
            None => group_file
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == group).then(|| f[2].parse::<u32>().ok())?
                })
                .ok_or_else(|| {
                    format!("group `{group}` is not in the image's /etc/group; use a numeric gid")
                })?,
        };
    }
    Ok(resolved)
}

/// The gids of the groups in `group_file` (`/etc/group`) that list `user` as a member.
fn member_of(group_file: &str, user: &str) -> Vec<u32> {
    let mut gids: Vec<u32> = group_file
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m.trim() == user))
                .then(|| f[2].parse().ok())?
        })
        .filter(|gid| *gid != u32::MAX)
        .collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

/// The process's environment: the config's, plus `HOME` and `PATH` when it has none.
pub fn environment(process: &InitProcess, user: &User) -> BTreeMap<String, String> {
    let mut env = process.env.clone();
    env.entry("HOME".into())
        .or_insert_with(|| user.home.clone());
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    env
}

/// `program` as the kernel will run it: a path with a `/` as it is, else the first executable
/// of that name on `path` (under `root`).
pub fn find_program(program: &str, path: &str, root: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        fs::metadata(root.join(p.strip_prefix("/").unwrap_or(p)))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// Why a program cannot run, and the exit code that says so (127 not found, 126 not runnable).
#[derive(Debug)]
pub struct Unrunnable {
    pub code: i32,
    pub message: String,
}

/// A [`Command`] for `argv` as `process` says (environment, user, working directory).
pub fn command(process: &InitProcess, argv: &[String], root: &Path) -> Result<Command, Unrunnable> {
    let user =
        resolve_user(&process.user, root).map_err(|message| Unrunnable { code: 126, message })?;
    let env = environment(process, &user);
    let Some(first) = argv.first() else {
        return Err(Unrunnable {
            code: 127,
            message: "there is no command to run: the image has no Entrypoint or Cmd and the machine config no init.exec/cmd".into(),
        });
    };
    let program = find_program(first, &env["PATH"], root).ok_or_else(|| Unrunnable {
        code: 127,
        message: format!(
            "`{first}` was not found in the image (PATH={}); check the image's Entrypoint/Cmd or the machine's init.exec",
            env["PATH"]
        ),
    })?;
    let mut cmd = Command::new(program);
    cmd.arg0(first)
        .args(&argv[1..])
        .env_clear()
        .envs(&env)
        .current_dir(if process.working_dir.is_empty() {
            "/"
        } else {
            &process.working_dir
        });
    if user.uid != 0 || user.gid != 0 {
        switch_user(&mut cmd, &user);
    }
    Ok(cmd)
}

/// Makes `cmd` run as `user`, with its supplementary groups (which `Command::uid` would drop:
/// setting them is unstable in std).
fn switch_user(cmd: &mut Command, user: &User) {
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it allocates nothing (the groups were collected before the fork) and makes
    // three raw system calls. The child has a single thread, so the per-thread calls (no libc
    // setxid broadcast) change the whole process, in the order the kernel needs: groups and gid
    // while still root, the uid last.
    unsafe {
        cmd.pre_exec(move || {
            rustix::thread::set_thread_groups(&groups)?;
            rustix::thread::set_thread_gid(gid)?;
            rustix::thread::set_thread_uid(uid)?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_from_the_image() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app\naudio:x:60:root,app\nnobody:x:70:\n",
        )
        .unwrap();
        let r = |s| resolve_user(s, dir.path());
        assert_eq!(r("").unwrap().uid, 0);
        assert_eq!(
            r("app").unwrap(),
            User {
                uid: 1000,
                gid: 1001,
                home: "/home/app".into(),
                groups: vec![50, 60],
            }
        );
        assert_eq!(r("app:staff").unwrap().gid, 50);
        assert_eq!(r("1000:7").unwrap().gid, 7);
        assert_eq!(
            r("4242").unwrap(),
            User {
                uid: 4242,
                gid: 0,
                home: "/".into(),
                groups: vec![],
            }
        );
        assert!(r("4294967295").is_err());
        assert!(r("nobody-here").unwrap_err().contains("/etc/passwd"));
        assert!(r("app:nogroup").unwrap_err().contains("/etc/group"));
        // An image with no /etc/passwd at all (FROM scratch): root still is.
        let scratch = tempfile::tempdir().unwrap();
        let root = resolve_user("root", scratch.path()).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert!(resolve_user("app", scratch.path()).is_err());
    }

    #[test]
    fn programs_are_found_on_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        let p = dir.path().join("bin/tool");
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("bin/data"), "x").unwrap();
        assert_eq!(
            find_program("tool", "/usr/bin:/bin", dir.path()),
            Some(PathBuf::from("/bin/tool"))
        );
        assert_eq!(find_program("data", "/bin", dir.path()), None);
        assert_eq!(
            find_program("/bin/tool", "", dir.path()),
            Some(PathBuf::from("/bin/tool"))
        );
        assert_eq!(find_program("nope", "/bin", dir.path()), None);
    }
}
