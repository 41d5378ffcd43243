#!/usr/bin/env python3
"""Multi-region benchmark on a dev cluster (ord, ams, syd; gVisor machines; the mesh's emulated
round trips: ord-ams 95 ms, ord-syd 200 ms, ams-syd 280 ms).

  (1) client latency per region: an app with a machine in ord and one in ams; from each region's
      client namespace, sequential keep-alive requests through that region's edge, vs the ideal:
      connecting straight to the nearest machine, i.e. one round trip to its region (the emulated
      one, which a direct client would pay too) plus what the machine itself takes (measured on its
      host, no proxy). syd has no machine: its users are served from the nearest other region.
  (2) saturation: a burst (CONCURRENCY clients, BURST requests, each held 100 ms by the machine)
      from ord's users at an app whose ord machine takes 2 at a time (hard_limit) and whose ams
      machine takes 50; errors (goal: none while ams has room), p99, and where requests went;
      vs the same burst at an app with the ord machine only (the reference platform's behaviour
      when no other region has capacity).

Prints medians, p99 and ratios; never asserts times. Run through bench/regions.sh (it sets up and
builds); knobs: REQUESTS (default 50), BURST (default 400), CONCURRENCY (default 16), KEEP=1 to
leave the cluster up (its data dir is printed; `aloft --data-dir DIR dev cluster down` removes it).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALOFT = os.environ.get("ALOFT_BIN", os.path.join(ROOT, "target/release/aloft"))
REQUESTS = int(os.environ.get("REQUESTS", "50"))
BURST = int(os.environ.get("BURST", "400"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "16"))
RTT_MS = {("ord", "ams"): 95, ("ord", "syd"): 200, ("ams", "syd"): 280}
HELLO = os.path.join(ROOT, "target/static/x86_64-unknown-linux-gnu/release/hello")

# The client half: runs inside a client namespace (`dev cluster exec`) or a host namespace.
CLIENT = r"""
import http.client, json, sys, time, threading
host, port, name, path, n, conc, keep = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
times, codes, bodies, lock = [], {}, {}, threading.Lock()
def worker(count):
    conn = None
    for _ in range(count):
        t = time.perf_counter()
        try:
            if conn is None or not keep:
                conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", path, headers={"Host": name})
            r = conn.getresponse()
            text = r.read().decode()
            # The example app's page names the region that served it.
            body = next((l[8:] for l in text.splitlines() if l.startswith("region: ")), "")
            code = r.status
            if r.getheader("connection", "").lower() == "close":
                conn.close(); conn = None
        except Exception as e:
            code, body = type(e).__name__, ""
            conn = None
        dt = time.perf_counter() - t
        with lock:
            times.append(dt); codes[str(code)] = codes.get(str(code), 0) + 1
            bodies[body] = bodies.get(body, 0) + 1
per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]
threads = [threading.Thread(target=worker, args=(c,)) for c in per]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"times": times, "codes": codes, "bodies": bodies}))
"""


def sh(*args, check=True, env=None):
    r = subprocess.run(args, check=False, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def client(prefix, host, port, name, path, n, conc=1, keep=True):
    out = sh(*prefix, "python3", "-c", CLIENT, host, str(port), name, path, str(n), str(conc),
             "1" if keep else "0")
    return json.loads(out.strip().splitlines()[-1])


def push_example(data, token, name_tag):
    """The example app (examples/hello: its page names its region; `?sleep=MS` holds a request),
    as an image pushed to the dev cluster's registry as `personal/NAME:TAG`."""
    app_dir = os.path.join(data, "app")
    os.makedirs(app_dir, exist_ok=True)
    shutil.copy(HELLO, os.path.join(app_dir, "hello"))
    layout = os.path.join(data, "layout")
    sh(ALOFT, "image", "build", "--busybox", "--rootfs", app_dir, "--entrypoint", "/hello",
       "--expose", "8080", "-o", f"oci:{layout}:v1")
    sh("skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-creds", f"x:{token}",
       f"oci:{layout}:v1", f"docker://127.0.0.1:5000/personal/{name_tag}")


def edge(data, region):
    """A command prefix that runs in `region`'s client namespace (127.0.0.1 is its edge)."""
    return [ALOFT, "--data-dir", data, "dev", "cluster", "exec", "--region", region, "--"]


def ms(xs, q=0.5):
    xs = sorted(xs)
    return 1000 * xs[min(len(xs) - 1, int(q * len(xs)))]


def rtt(a, b):
    return 0 if a == b else RTT_MS.get((a, b), RTT_MS.get((b, a), 100))


def main():
    data = tempfile.mkdtemp(prefix="aloft-bench-regions-")
    env = dict(os.environ)
    cli = [ALOFT, "--data-dir", data]
    try:
        print("==> dev cluster up (ord, ams, syd)")
        sh(*cli, "dev", "cluster", "up", "--regions", "ord,ams,syd")
        token = open(os.path.join(data, "token")).read().strip()
        env["ALOFT_API_TOKEN"] = token
        push_example(data, token, "web:v1")

        def run(app, region, hard):
            body = {"region": region, "config": {"image": "web:v1", "services": [{
                "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}],
                "concurrency": {"type": "requests", "soft_limit": max(1, hard // 2),
                                "hard_limit": hard}}]}}
            out = sh("curl", "-sS", "-X", "POST", "-H", f"authorization: Bearer {token}",
                     "-H", "content-type: application/json", "--data", json.dumps(body),
                     f"http://127.0.0.1:4280/v1/apps/{app}/machines")
            m = json.loads(out)
            if "id" not in m:
                sys.exit(f"bench: creating a machine: {out}")
            return m

        for app in ("web", "burst", "solo"):
            sh(*cli, "apps", "create", app, env=env)
        web = {r: run("web", r, 25) for r in ("ord", "ams")}
        run("burst", "ord", 2)
        run("burst", "ams", 50)
        run("solo", "ord", 2)
        for m in web.values():
            sh(*cli, "machine", "wait", m["id"], "-a", "web", "--state", "started", env=env,
               check=False)

        # Every edge routes to both machines, and has measured its distances.
        deadline = time.time() + 60
        for region in ("ord", "ams", "syd"):
            while True:
                got = client(edge(data, region), "127.0.0.1", 80, "web.localhost", "/", 1)
                want = "ams" if region == "ams" else "ord"
                if want in got["bodies"]:
                    break
                if time.time() > deadline:
                    sys.exit(f"bench: {region}'s edge never served from {want}: {got}")
                time.sleep(0.5)
        time.sleep(5)

        print(f"\n(1) client latency, {REQUESTS} sequential requests per region")
        print(f"{'region':8}{'served by':11}{'edge p50':>10}{'edge p99':>10}{'ideal p50':>11}{'ratio':>8}")
        for region in ("ord", "ams", "syd"):
            got = client(edge(data, region), "127.0.0.1", 80, "web.localhost", "/", REQUESTS)
            served = max(got["bodies"], key=got["bodies"].get)
            m = web.get(served)
            host_ns = f"alc-{served}-1"
            direct = client(["ip", "netns", "exec", host_ns], m["private_ip"], 8080, "x", "/",
                            REQUESTS, keep=False)
            ideal = ms(direct["times"]) + rtt(region, served)
            p50 = ms(got["times"])
            print(f"{region:8}{served:11}{p50:>8.1f}ms{ms(got['times'], 0.99):>8.1f}ms"
                  f"{ideal:>9.1f}ms{p50 / ideal:>7.2f}x")

        print(f"\n(2) saturation: {BURST} requests, {CONCURRENCY} at a time, from ord's users; "
              "each held 100 ms; ord's machine takes 2 at a time")
        for app, what in (("burst", "ord (2) + ams (50)"), ("solo", "ord (2) only")):
            got = client(edge(data, "ord"), "127.0.0.1", 80, f"{app}.localhost", "/?sleep=100",
                         BURST, CONCURRENCY)
            errors = sum(c for code, c in got["codes"].items() if code != "200")
            where = ", ".join(f"{b or '-'} {c}" for b, c in sorted(got["bodies"].items()))
            print(f"  {what:20} errors {errors:4}  p50 {ms(got['times']):7.1f} ms  "
                  f"p99 {ms(got['times'], 0.99):7.1f} ms  served by: {where}  codes {got['codes']}")
    finally:
        if os.environ.get("KEEP") == "1":
            print(f"\nthe cluster is still up: {data}")
        else:
            subprocess.run([ALOFT, "--data-dir", data, "dev", "cluster", "down"],
                           capture_output=True)
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
