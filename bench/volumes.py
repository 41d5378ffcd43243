#!/usr/bin/env python3
"""Volume benchmark, gVisor backend: what an encrypted volume costs, against the same work
without one, in the same run.

  (1) `volumes create` (the host makes the encrypted disk and its filesystem), the first and a
      later start of a machine with the volume (the disk is opened), vs the start of the same
      machine without a volume;
  (2) sequential write of 128 MiB with fsync inside the machine: to the volume (qcow2 + LUKS
      through qemu-storage-daemon, FUSE and a loop device) vs to the machine's own root
      filesystem (overlayfs on the host's disk), and the same write by the host itself to its
      disk (the floor).

Prints medians and ratios; never asserts times. Run through bench/volumes.sh (it sets up and
builds); knobs: RUNS (default 3), ALOFT_BIN (the aloft binary).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime  # noqa: E402
from runtime import ROOT, DevUp, median, sh  # noqa: E402

# The build to measure (bench/volumes.sh passes it; PROFILE=debug there for the tests' build).
ALOFT = runtime.ALOFT = os.environ.get("ALOFT_BIN", runtime.ALOFT)
RUNS = int(os.environ.get("RUNS", "3"))
# 1 GB: gVisor keeps written files' pages in the sandbox's memory, counted against the machine.
SLEEPER = ["--memory", "1024", "--entrypoint", "/bin/sh -c", "--cmd", '"exec sleep 100000"']
MB = 128


def timed(f):
    t0 = time.monotonic()
    out = f()
    return time.monotonic() - t0, out


def dd_seconds(text):
    """Seconds GNU dd says the copy took."""
    m = re.search(r"copied, ([0-9.]+) s", text)
    if not m:
        sys.exit(f"bench: no time in dd's output: {text!r}")
    return float(m.group(1))


def main():
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, runsc, loop mounts)")
    work = tempfile.mkdtemp(prefix="aloft-bench-")
    layout = os.path.join(work, "hello")
    sh(os.path.join(ROOT, "scripts/build-hello.sh"), ALOFT, layout, capture=False)
    dev = DevUp("gvisor", work)
    try:
        dev.push(layout)
        created, first, again, plain = [], [], [], []
        to_volume, to_rootfs, on_host = [], [], []
        for _ in range(RUNS):
            t, out = timed(lambda: dev.aloft("--json", "volumes", "create", "data",
                                             "--region", "local", "-a", "bench"))
            created.append(t)
            vol = json.loads(out)["id"]
            run = ["--json", "machine", "run", "hello:latest", "-a", "bench", *SLEEPER]
            t, out = timed(lambda: dev.aloft(*run, "--volume", f"{vol}:/data"))
            first.append(t)
            mid = json.loads(out)["id"]
            dev.aloft("machine", "stop", mid, "-a", "bench")
            dev.aloft("machine", "wait", mid, "-a", "bench", "--state", "stopped")
            t, _ = timed(lambda: (dev.aloft("machine", "start", mid, "-a", "bench"),
                                  dev.aloft("machine", "wait", mid, "-a", "bench",
                                            "--state", "started")))
            again.append(t)
            t, out = timed(lambda: dev.aloft(*run))
            plain.append(t)
            other = json.loads(out)["id"]

            def exec_in(script):
                t, _ = timed(lambda: dev.aloft("machine", "exec", mid, "-a", "bench", "--",
                                               "sh", "-c", script))
                return t

            # The image's busybox dd prints no time: the exec is timed from here, less an
            # empty exec's time.
            overhead = median([exec_in("true") for _ in range(3)])

            def dd_in(path):
                t = exec_in(f"dd if=/dev/zero of={path} bs=1M count={MB} conv=fsync 2>/dev/null")
                exec_in(f"rm -f {path}")
                return max(t - overhead, 1e-3)

            to_volume.append(dd_in("/data/bench"))
            to_rootfs.append(dd_in("/tmp/bench"))
            target = os.path.join(work, "host-bench")
            out = subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={MB}",
                                  "conv=fsync"], capture_output=True, text=True).stderr
            os.remove(target)
            on_host.append(dd_seconds(out))
            for m in (mid, other):
                dev.aloft("machine", "destroy", m, "-a", "bench", "--force")
            dev.aloft("volumes", "destroy", vol, "-a", "bench", "--yes")

        print(f"\nvolumes, gVisor backend, medians of {RUNS} runs")
        print(f"  volumes create (the host makes the encrypted disk)  {median(created):6.2f} s")
        print(f"  first start with the new volume      {median(first):6.2f} s"
              f"   {median(first) / median(plain):5.2f}x the start without one")
        print(f"  start with the volume again          {median(again):6.2f} s"
              f"   {median(again) / median(plain):5.2f}x")
        print(f"  start without a volume (peer)        {median(plain):6.2f} s")
        mb = MB * 1.048576

        def rate(xs):
            return mb / median(xs)

        print(f"  write {MB} MiB + fsync to the volume   {rate(to_volume):6.0f} MB/s"
              f"   {median(to_volume) / median(to_rootfs):5.2f}x the root filesystem's time,"
              f" {median(to_volume) / median(on_host):5.2f}x the host's")
        print(f"  to the machine's root fs (peer)      {rate(to_rootfs):6.0f} MB/s")
        print(f"  by the host to its own disk (floor)  {rate(on_host):6.0f} MB/s")
    finally:
        # Machines outlive `dev up`: a run that failed half-way must not leave any behind.
        listed = subprocess.run([ALOFT, "--json", "machine", "list", "-a", "bench"],
                                capture_output=True, text=True, env=dev.env)
        for m in json.loads(listed.stdout or "[]"):
            subprocess.run([ALOFT, "machine", "destroy", m["id"], "-a", "bench", "--force"],
                           capture_output=True, env=dev.env)
        dev.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
