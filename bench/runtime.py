#!/usr/bin/env python3
"""Machine runtime benchmark: aloft's backends against the bare runtime they drive, same run.

  (1) create-to-first-TCP-accept of the example image (examples/hello):
      aloft/gvisor  = `aloft machine run` until the machine accepts on its private address, vs
      bare runsc    = `runsc run --detach` of the same image's bundle (umoci unpack) in a
                      prepared network namespace until it accepts;
      aloft/microvm = the same through the microVM backend, vs
      bare qemu     = the qemu-system-x86_64 command line aloft used for that machine, rerun by
                      hand on a copy of its disk, until the guest accepts.
  (2) idle memory per machine: RSS of every process of a machine (shim, runsc sandbox/gofer, or
      qemu) with N machines up at once, vs the same number of bare runsc sandboxes.
  (3) machines started per second, gVisor backend, N started at once, vs N bare `runsc run`.
  (4) autostart: a request through aloft's proxy to an app whose only machine is stopped, until
      the response's first byte (the proxy starts the machine and holds the request), vs the
      bare runtime's create-to-accept from (1): the floor for booting the same image.

Prints medians and ratios; never asserts times. Run through bench/runtime.sh (it sets up and
builds); knobs: RUNS (default 5), MACHINES (default 20), VM_RUNS (default 2, TCG is slow here).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALOFT = os.path.join(ROOT, "target/release/aloft")
RUNS = int(os.environ.get("RUNS", "5"))
MACHINES = int(os.environ.get("MACHINES", "20"))
VM_RUNS = int(os.environ.get("VM_RUNS", "2"))
BRIDGE = "alb0"
SUBNET = "172.30.0.0/24"


def sh(*args, check=True, capture=True, env=None):
    r = subprocess.run(args, check=False, capture_output=capture, text=True, env=env)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout if capture else ""


def wait_accept(ip, port=8080, timeout=120.0):
    """Seconds until something accepts a TCP connection on ip:port."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((ip, port))
            s.close()
            return
        except OSError:
            s.close()
            time.sleep(0.005)
    sys.exit(f"bench: nothing accepted on {ip}:{port} within {timeout}s")


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(pid):
    """pid and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pids_mentioning(needle):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class DevUp:
    """`aloft dev up` with one backend, on its own ports, bridge and data dir."""

    def __init__(self, runtime, work):
        self.data = os.path.join(work, f"dev-{runtime}")
        os.makedirs(self.data, exist_ok=True)
        self.log = open(os.path.join(work, f"dev-{runtime}.log"), "w")
        self.proc = subprocess.Popen(
            [ALOFT, "dev", "up", "--data-dir", self.data, "--runtime", runtime,
             "--api-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
             "--proxy-addr", "127.0.0.1:0", "--proxy-https-addr", "127.0.0.1:0",
             "--metrics-addr", "127.0.0.1:0",
             "--bridge", BRIDGE, "--machine-subnet", SUBNET],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(self.data, "api-url")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: dev up --runtime {runtime} did not start; see {self.log.name}")
            time.sleep(0.1)
        self.env = dict(os.environ, ALOFT_DATA_DIR=self.data,
                        ALOFT_API_URL=open(os.path.join(self.data, "api-url")).read().strip())
        self.registry = open(os.path.join(self.data, "registry-url")).read().strip()
        self.registry = self.registry.removeprefix("http://")

    def aloft(self, *args):
        return sh(ALOFT, *args, env=self.env)

    def push(self, layout):
        token = open(os.path.join(self.data, "token")).read().strip()
        sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"x:{token}",
           f"oci:{layout}:latest", f"docker://{self.registry}/personal/hello:latest")
        self.aloft("apps", "create", "bench")

    def run(self):
        out = self.aloft("machine", "run", "hello:latest", "-a", "bench", "--json")
        m = json.loads(out)
        return m["id"], m["private_ip"]

    def destroy(self, mid):
        self.aloft("machine", "destroy", mid, "-a", "bench", "--force")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)

    def autostart(self, runs, timeout):
        """Seconds from a request to a stopped app to its first byte, `runs` times."""
        self.aloft("apps", "create", "auto")
        out = self.aloft("machine", "run", "hello:latest", "-a", "auto", "--json",
                         "-p", "80:8080/tcp:http", "--autostop", "stop")
        mid, ip = json.loads(out)["id"], json.loads(out)["private_ip"]
        wait_accept(ip, timeout=timeout)
        proxy = open(os.path.join(self.data, "proxy-url")).read().strip().removeprefix("http://")
        host, port = proxy.rsplit(":", 1)
        times = []
        for _ in range(runs):
            self.aloft("machine", "stop", mid, "-a", "auto")
            self.aloft("machine", "wait", mid, "-a", "auto", "--state", "stopped")
            t0 = time.monotonic()
            s = socket.create_connection((host, int(port)), timeout=timeout)
            s.sendall(b"GET / HTTP/1.1\r\nHost: auto.localhost\r\nConnection: close\r\n\r\n")
            first = s.recv(1)
            times.append(time.monotonic() - t0)
            rest = first + s.recv(65536)
            s.close()
            if not rest.startswith(b"HTTP/1.1 200"):
                sys.exit(f"bench: autostart answered {rest[:200]!r}")
        self.destroy_in("auto", mid)
        return times

    def destroy_in(self, app, mid):
        self.aloft("machine", "destroy", mid, "-a", app, "--force")


class BareRunsc:
    """The same image run with runsc alone: umoci's bundle, a netns + veth made here."""

    def __init__(self, layout, work):
        self.work = work
        self.root = os.path.join(work, "runsc-root")
        self.bundle = os.path.join(work, "bundle")
        sh("umoci", "unpack", "--image", f"{layout}:latest", self.bundle)
        with open(os.path.join(self.bundle, "config.json")) as f:
            spec = json.load(f)
        spec["process"]["terminal"] = False
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "network"]
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        self.n = 0

    def netns(self, i):
        ns = f"albench{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"albh{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"10.250.{i}.1/24", "dev", f"albh{i}")
        sh("ip", "link", "set", f"albh{i}", "up")
        sh("nsenter", f"--net=/var/run/netns/{ns}", "ip", "addr", "add", f"10.250.{i}.2/24", "dev", "eth0")
        sh("nsenter", f"--net=/var/run/netns/{ns}", "ip", "link", "set", "eth0", "up")
        sh("nsenter", f"--net=/var/run/netns/{ns}", "ip", "link", "set", "lo", "up")
        return ns, f"10.250.{i}.2"

    def start(self, i):
        """Starts sandbox i (its netns made beforehand); returns the Popen of `runsc run`.
        Each sandbox gets its bundle through a link of its own (`bundle-<i>`), so that both of
        its processes (sandbox and gofer) name it on their command lines."""
        ns = f"albench{i}"
        link = f"{self.bundle}-{i}"
        if not os.path.islink(link):
            os.symlink(self.bundle, link)
        return subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{ns}", "runsc", "--root", self.root,
             "--platform=ptrace", "--network=host", "run", "--detach", "--bundle", link,
             f"bench{i}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def pids(i):
        """Sandbox i's processes: the sandbox and its gofer."""
        return pids_mentioning(f"bundle-{i}\0")

    def cleanup(self, i):
        subprocess.run(["runsc", "--root", self.root, "delete", "--force", f"bench{i}"],
                       capture_output=True)
        subprocess.run(["ip", "netns", "del", f"albench{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", f"albh{i}"], capture_output=True)


def bench_gvisor(layout, work):
    print(f"\n== gVisor: create to first TCP accept ({RUNS} runs each)")
    bare = BareRunsc(layout, work)
    bare_t = []
    for r in range(RUNS):
        _, ip = bare.netns(r)
        t0 = time.monotonic()
        p = bare.start(r)
        p.wait()
        wait_accept(ip)
        bare_t.append(time.monotonic() - t0)
        bare.cleanup(r)
    dev = DevUp("gvisor", work)
    dev.push(layout)
    aloft_t = []
    for _ in range(RUNS):
        t0 = time.monotonic()
        mid, ip = dev.run()
        wait_accept(ip)
        aloft_t.append(time.monotonic() - t0)
        dev.destroy(mid)
    a, b = median(aloft_t), median(bare_t)
    print(f"aloft/gvisor  median {a * 1000:8.1f} ms")
    print(f"bare runsc    median {b * 1000:8.1f} ms")
    print(f"ratio aloft/bare: {a / b:.2f}x (goal <= 1.2x)")
    bare_start = b

    print(f"\n== gVisor: autostart, request to a stopped app until its first byte ({RUNS} runs)")
    auto = median(dev.autostart(RUNS, 60))
    print(f"aloft/gvisor  median {auto * 1000:8.1f} ms (proxy starts the machine, holds the request)")
    print(f"bare runsc    median {bare_start * 1000:8.1f} ms (create to accept, from above)")
    print(f"ratio aloft/bare: {auto / bare_start:.2f}x")

    print(f"\n== gVisor: {MACHINES} machines started at once")
    t0 = time.monotonic()
    procs = [subprocess.Popen([ALOFT, "machine", "run", "hello:latest", "-a", "bench", "--json"],
                              env=dev.env, stdout=subprocess.PIPE, text=True)
             for _ in range(MACHINES)]
    machines = [json.loads(p.communicate()[0]) for p in procs]
    for m in machines:
        wait_accept(m["private_ip"])
    aloft_rate = MACHINES / (time.monotonic() - t0)
    for i in range(MACHINES):
        bare.netns(100 + i)
    t0 = time.monotonic()
    procs = [bare.start(100 + i) for i in range(MACHINES)]
    for p in procs:
        p.wait()
    for i in range(MACHINES):
        wait_accept(f"10.250.{100 + i}.2")
    bare_rate = MACHINES / (time.monotonic() - t0)
    print(f"aloft/gvisor  {aloft_rate:6.2f} machines/s")
    print(f"bare runsc    {bare_rate:6.2f} sandboxes/s")
    print(f"ratio aloft/bare: {aloft_rate / bare_rate:.2f}x")

    print(f"\n== gVisor: idle memory per machine, {MACHINES} up at once")
    time.sleep(2)
    aloft_kb = [rss_kb(pids_mentioning(m["id"])) for m in machines]
    bare_kb = [rss_kb(BareRunsc.pids(100 + i)) for i in range(MACHINES)]
    a, b = median(aloft_kb), median(bare_kb)
    print(f"aloft/gvisor  median {a / 1024:7.1f} MiB per machine (shim + runsc processes)")
    print(f"bare runsc    median {b / 1024:7.1f} MiB per sandbox (sandbox + gofer)")
    print(f"ratio aloft/bare: {a / b:.2f}x")
    for m in machines:
        dev.destroy(m["id"])
    for i in range(MACHINES):
        bare.cleanup(100 + i)
    dev.stop()


def bench_microvm(layout, work):
    print(f"\n== microVM: create to first TCP accept ({VM_RUNS} runs each)")
    dev = DevUp("microvm", work)
    dev.push(layout)
    aloft_t, bare_t, rss = [], [], []
    for _ in range(VM_RUNS):
        t0 = time.monotonic()
        mid, ip = dev.run()
        wait_accept(ip, timeout=300)
        aloft_t.append(time.monotonic() - t0)
        qemu = [p for p in pids_mentioning(mid)
                if b"qemu-system" in open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0]]
        rss.append(rss_kb(pids_mentioning(mid)))
        cmdline = open(f"/proc/{qemu[0]}/cmdline", "rb").read().split(b"\0")[:-1]
        cmdline = [c.decode() for c in cmdline]
        machine_dir = os.path.join(dev.data, "runtime/machines", mid)
        copy = os.path.join(work, "vm-copy")
        shutil.rmtree(copy, ignore_errors=True)
        # The stopped machine keeps its files; rerun its command line by hand on a copy.
        dev.aloft("machine", "stop", mid, "-a", "bench")
        shutil.copytree(machine_dir, copy, symlinks=True)
        cmdline = [c.replace(machine_dir, copy) for c in cmdline]
        t0 = time.monotonic()
        p = subprocess.Popen(cmdline, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_accept(ip, timeout=300)
        bare_t.append(time.monotonic() - t0)
        p.kill()
        p.wait()
        dev.destroy(mid)
    a, b = median(aloft_t), median(bare_t)
    print(f"aloft/microvm median {a * 1000:8.1f} ms")
    print(f"bare qemu     median {b * 1000:8.1f} ms  (same command line, same disk)")
    print(f"ratio aloft/bare: {a / b:.2f}x (goal <= 1.2x)")
    print(f"idle memory: median {median(rss) / 1024:.1f} MiB per microVM (shim + qemu)")

    print(f"\n== microVM: autostart, request to a stopped app until its first byte ({VM_RUNS} runs)")
    auto = median(dev.autostart(VM_RUNS, 300))
    print(f"aloft/microvm median {auto * 1000:8.1f} ms (proxy starts the machine, holds the request)")
    print(f"bare qemu     median {b * 1000:8.1f} ms (boot to accept, from above)")
    print(f"ratio aloft/bare: {auto / b:.2f}x")
    dev.stop()


def main():
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, runsc, TAP devices)")
    work = tempfile.mkdtemp(prefix="aloft-bench-")
    layout = os.path.join(work, "hello")
    sh(os.path.join(ROOT, "scripts/build-hello.sh"), ALOFT, layout, capture=False)
    which = sys.argv[1:] or ["gvisor", "microvm"]
    try:
        if "gvisor" in which:
            bench_gvisor(layout, work)
        if "microvm" in which:
            bench_microvm(layout, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
