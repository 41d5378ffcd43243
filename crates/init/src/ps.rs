//! `aloft-init ps`: the machine's processes from `/proc`, as JSON, in the reference's shape
//! ([`ProcessStat`]): start time, run time, command, working directory, CPU share, resident
//! memory and the sockets each listens on.

use aloft_types::api::{ListenSocket, ProcessStat};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on every Linux we run on).
const TICKS: u64 = 100;
const PAGE: u64 = 4096;
/// The most processes listed (a machine with more is listed up to here, lowest pids first).
const MAX_PROCESSES: usize = 4096;
/// The most of a command line kept, in bytes.
const MAX_COMMAND: usize = 4096;
/// The most of one `/proc/net/*` table read, in bytes.
const MAX_NET_TABLE: u64 = 4 << 20;
/// The most sockets listed for one process.
const MAX_SOCKETS: usize = 64;

pub fn main() -> i32 {
    match serde_json::to_string(&list()) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("aloft-init ps: {e}");
            1
        }
    }
}

/// Every process of the machine, by pid.
pub fn list() -> Vec<ProcessStat> {
    let mut pids: Vec<i32> = match fs::read_dir("/proc") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect(),
        Err(_) => return Vec::new(),
    };
    pids.sort_unstable();
    pids.truncate(MAX_PROCESSES);
    let clock = Clock::read();
    let sockets = listening_sockets();
    pids.into_iter()
        .filter_map(|pid| process(pid, &clock, &sockets))
        .collect()
}

/// The system's boot time and uptime, to turn `/proc/*/stat` start ticks into times.
struct Clock {
    /// Boot time, seconds since the Unix epoch (`btime` of `/proc/stat`).
    boot: u64,
    /// Seconds since boot (`/proc/uptime`).
    uptime: f64,
}

impl Clock {
    fn read() -> Self {
        let boot = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        let uptime = fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self { boot, uptime }
    }
}

/// One process, or `None` when it is gone (or not readable).
fn process(pid: i32, clock: &Clock, sockets: &HashMap<u64, ListenSocket>) -> Option<ProcessStat> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After the command: state(0) ppid(1) ... utime(11) stime(12) ... starttime(19) ... rss(21).
    let cpu_ticks = num(11) + num(12);
    let started_ticks = num(19);
    let since_boot = started_ticks / TICKS;
    let run_secs = (clock.uptime - started_ticks as f64 / TICKS as f64).max(0.0);
    let cpu = if run_secs > 0.0 {
        (cpu_ticks as f64 / TICKS as f64 / run_secs * 100.0).round() as u64
    } else {
        0
    };
    Some(ProcessStat {
        pid,
        stime: clock.boot + since_boot,
        rtime: run_secs as u64,
        command: command_line(&dir),
        directory: fs::read_link(dir.join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpu,
        rss: num(21) * PAGE,
        listen_sockets: sockets_of(&dir, sockets),
    })
}

/// The command line, arguments separated by spaces (at most [`MAX_COMMAND`] bytes read).
fn command_line(dir: &Path) -> String {
    let mut raw = Vec::new();
    if let Ok(f) = fs::File::open(dir.join("cmdline")) {
        let _ = f.take(MAX_COMMAND as u64).read_to_end(&mut raw);
    }
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The listening sockets among the process's open files.
fn sockets_of(dir: &Path, sockets: &HashMap<u64, ListenSocket>) -> Vec<ListenSocket> {
    let Ok(fds) = fs::read_dir(dir.join("fd")) else {
        return Vec::new();
    };
    let mut out: Vec<ListenSocket> = fds
        .flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let inode = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            sockets.get(&inode).cloned()
        })
        .take(MAX_SOCKETS)
        .collect();
    out.sort_by(|a, b| (&a.proto, &a.address).cmp(&(&b.proto, &b.address)));
    out.dedup();
    out
}

/// Listening TCP sockets and bound UDP sockets of the machine, by inode.
fn listening_sockets() -> HashMap<u64, ListenSocket> {
    let mut out = HashMap::new();
    for (file, proto) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let mut text = String::new();
        if let Ok(f) = fs::File::open(Path::new("/proc/net").join(file)) {
            let _ = f.take(MAX_NET_TABLE).read_to_string(&mut text);
        }
        out.extend(text.lines().skip(1).filter_map(|l| net_line(proto, l)));
    }
    out
}

/// One line of `/proc/net/{tcp,tcp6,udp,udp6}`: the socket's inode and address when it listens
/// (TCP state `0A`) or is an unconnected UDP socket (state `07`).
fn net_line(proto: &str, line: &str) -> Option<(u64, ListenSocket)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
    let listening = match proto {
        "tcp" => *state == "0A",
        _ => *state == "07",
    };
    if !listening {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let address = match ip.len() {
        8 => format!("{}:{port}", Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            format!("[{}]:{port}", Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    let proto = proto.to_string();
    Some((inode.parse().ok()?, ListenSocket { proto, address }))
}

/// Four bytes of an address as the kernel prints them: a 32-bit word in the host's byte order.
fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_listed_with_its_listening_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        let all = list();
        let p = all.iter().find(|p| p.pid == me).expect("listed");
        assert!(p.rss > 0);
        assert!(!p.command.is_empty());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(p.directory, cwd.to_string_lossy());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(p.stime <= now && p.stime + 3600 > now, "{p:?}");
        assert!(p.rtime <= 3600, "{p:?}");
        let want = ListenSocket {
            proto: "tcp".into(),
            address: format!("127.0.0.1:{port}"),
        };
        assert!(p.listen_sockets.contains(&want), "{p:?}");
    }

    #[test]
    fn net_table_lines_are_read_in_the_kernels_byte_order() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        let (inode, s) = net_line("tcp", v4).unwrap();
        assert_eq!(inode, 12345);
        if cfg!(target_endian = "little") {
            assert_eq!(s.address, "127.0.0.1:8080");
        }
        let v6 = "   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1";
        let (_, s) = net_line("tcp", v6).unwrap();
        assert_eq!((s.proto.as_str(), s.address.as_str()), ("tcp", "[::]:80"));
        // An established connection is no listening socket; a bound UDP socket is.
        assert!(net_line("tcp", &v4.replace(" 0A ", " 01 ")).is_none());
        assert!(net_line("udp", &v4.replace(" 0A ", " 07 ")).is_some());
        assert!(net_line("tcp", "garbage").is_none());
    }
}
