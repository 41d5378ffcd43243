//! `aloft-init ps`: the machine's processes from `/proc`, as JSON.

use aloft_types::api::ProcessInfo;
use std::fs;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on every Linux we run on).
const TICKS: u64 = 100;
const PAGE: u64 = 4096;

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

pub fn list() -> Vec<ProcessInfo> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After the command: state(0) ppid(1) ... utime(11) stime(12) ... rss(21).
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let command = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(ProcessInfo {
            pid,
            command,
            cpu_ms: (num(11) + num(12)) * 1000 / TICKS,
            rss_bytes: num(21) * PAGE,
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_listed() {
        let me = std::process::id();
        let all = super::list();
        let p = all.iter().find(|p| p.pid == me).expect("listed");
        assert!(p.rss_bytes > 0);
        assert!(!p.command.is_empty());
    }
}
