//! `aloft-init`: the PID 1 of every aloft machine, and the host-side shim that supervises a
//! machine's runtime process.
//!
//! Modes, by first argument:
//! - none (or `init`): PID 1. In a gVisor sandbox it reads `/.aloft/config.json`
//!   ([`aloft_types::init::InitConfig`]), sets the machine up (hostname, `/etc/hosts`, files),
//!   runs the process with its environment and user, forwards signals, reaps orphans, and writes
//!   an [`aloft_types::init::ExitReport`] to `/.aloft/exit.json`; then it stops what the process
//!   left running (SIGTERM, a short grace, SIGKILL) and exits with the process's code. Tests
//!   run it as a normal process:
//!   `aloft-init init --config FILE --exit-file FILE --no-system-setup`.
//! - `exec [--config FILE] -- ARGV...`: runs ARGV with the main process's environment, user and
//!   working directory (what `aloft machine exec` runs through `runsc exec`).
//! - `ps`: the machine's processes as JSON (`Vec<ProcessStat>`).
//! - `shim --dir DIR [--netns PATH] -- CMD...`: see [`shim`].
//!
//! As PID 1 of a microVM (its initramfs holds `/aloft/config.json`) it boots the machine first:
//! see [`vm`].
//!
//! It is linked statically (`scripts/build-init.sh`) because it runs inside images that may have
//! no C library at all.

mod netlink;
mod process;
mod ps;
mod run;
mod setup;
mod shim;
mod vm;

use aloft_types::init::{CONTAINER_CONFIG_PATH, CONTAINER_EXIT_PATH};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    if vm::is_vm() {
        return ExitCode::from(vm::main().clamp(0, 255) as u8);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        None | Some("init") => init(args.get(1..).unwrap_or_default()),
        Some("exec") => exec(&args[1..]),
        Some("ps") => ps::main(),
        Some("shim") => shim::main(&args[1..]),
        Some(other) => {
            eprintln!("aloft-init: unknown mode `{other}` (init, exec, ps, shim)");
            2
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn init(args: &[String]) -> i32 {
    let mut opts = run::Options {
        config: CONTAINER_CONFIG_PATH.into(),
        exit_file: CONTAINER_EXIT_PATH.into(),
        system_setup: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--config", Some(v)) => {
                opts.config = PathBuf::from(v);
                it.next();
            }
            ("--exit-file", Some(v)) => {
                opts.exit_file = PathBuf::from(v);
                it.next();
            }
            ("--no-system-setup", _) => opts.system_setup = false,
            _ => {
                eprintln!("aloft-init: unknown argument {a}");
                return 2;
            }
        }
    }
    let report = match run::load_config(&opts.config) {
        Ok(cfg) => {
            // The host waits for this file to know the machine's process runs.
            let started = opts.exit_file.with_file_name("started");
            run::run(&cfg, &opts, &|pid| {
                let _ = std::fs::write(&started, pid.to_string());
            })
        }
        Err(e) => {
            eprintln!("aloft-init: {e}");
            aloft_types::init::ExitReport {
                exit_code: 1,
                error: Some(e),
                ..Default::default()
            }
        }
    };
    if let Err(e) = run::write_report(&opts.exit_file, &report) {
        eprintln!(
            "aloft-init: cannot write the exit report to {}: {e}",
            opts.exit_file.display()
        );
    }
    // What the process left running ends with it.
    run::stop_remaining(run::STOP_GRACE);
    report.exit_code
}

fn exec(args: &[String]) -> i32 {
    let (config, argv) = match args {
        [flag, path, sep, rest @ ..] if flag == "--config" && sep == "--" => {
            (PathBuf::from(path), rest)
        }
        [sep, rest @ ..] if sep == "--" => (PathBuf::from(CONTAINER_CONFIG_PATH), rest),
        _ => {
            eprintln!("usage: aloft-init exec [--config FILE] -- ARGV...");
            return 2;
        }
    };
    let cfg = match run::load_config(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aloft-init exec: {e}");
            return 126;
        }
    };
    match process::command(&cfg.process, argv, Path::new("/")) {
        Ok(mut cmd) => {
            let e = cmd.exec();
            eprintln!("aloft-init exec: cannot run `{}`: {e}", argv.join(" "));
            if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            }
        }
        Err(u) => {
            eprintln!("aloft-init exec: {}", u.message);
            u.code
        }
    }
}
