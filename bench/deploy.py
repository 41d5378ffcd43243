#!/usr/bin/env python3
"""Deploy benchmark on a dev cluster (ord, ams, syd; gVisor machines; emulated distances as in
bench/regions.py): the example app with two machines in each region, deployed from its fly.toml
while a client loop in every region asks its edge the whole time.

For each strategy: the time `aloft deploy` takes for a new release of all six machines (each
started and passing its health check), and the requests the three client loops saw fail during it.
The peer is `immediate` (every machine replaced at once, nothing gated on health): the floor on
time, and what a deploy without orchestration costs users. Goal: no failed request for rolling,
canary and bluegreen.

Prints times, failure counts and the ratio to immediate; never asserts. Run through
bench/deploy.sh (it sets up and builds); KEEP=1 leaves the cluster up.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from regions import ALOFT, client, edge, push_example, sh  # noqa: E402

REGIONS = ("ord", "ams", "syd")

# Asks the edge until the stop file exists; prints {"codes": {...}, "greetings": {...}}.
LOOP = r"""
import http.client, json, os, sys, time
name, stop = sys.argv[1], sys.argv[2]
codes, greetings = {}, {}
while not os.path.exists(stop):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 80, timeout=30)
        c.request("GET", "/", headers={"Host": name})
        r = c.getresponse()
        text = r.read().decode()
        code = str(r.status)
        first = text.splitlines()[0] if text else ""
        greetings[first] = greetings.get(first, 0) + 1
        c.close()
    except Exception as e:
        code = type(e).__name__
    codes[code] = codes.get(code, 0) + 1
    time.sleep(0.02)
print(json.dumps({"codes": codes, "greetings": greetings}))
"""

FLY_TOML = """app = "hello"
primary_region = "ord"

[build]
  image = "hello:v1"

[env]
  GREETING = "{greeting}"

[deploy]
  strategy = "{strategy}"
  wait_timeout = "120s"

[http_service]
  internal_port = 8080

  [[http_service.checks]]
    interval = "1s"
    timeout = "2s"
    path = "/"
"""


def main():
    data = tempfile.mkdtemp(prefix="aloft-bench-deploy-")
    env = dict(os.environ)
    cli = [ALOFT, "--data-dir", data]
    config = os.path.join(data, "fly.toml")

    def write(greeting, strategy):
        with open(config, "w") as f:
            f.write(FLY_TOML.format(greeting=greeting, strategy=strategy))

    try:
        print("==> dev cluster up (ord, ams, syd)")
        sh(*cli, "dev", "cluster", "up", "--regions", ",".join(REGIONS))
        token = open(os.path.join(data, "token")).read().strip()
        env["ALOFT_API_TOKEN"] = token
        push_example(data, token, "hello:v1")
        sh(*cli, "apps", "create", "hello", env=env)
        write("v0", "rolling")
        sh(*cli, "deploy", "-c", config, env=env)
        sh(*cli, "scale", "count", "2", "--region", ",".join(REGIONS), "-c", config, env=env)
        deadline = time.time() + 60
        for region in REGIONS:
            while "200" not in client(edge(data, region), "127.0.0.1", 80, "hello.localhost", "/", 1)["codes"]:
                if time.time() > deadline:
                    sys.exit(f"bench: {region}'s edge never served hello")
                time.sleep(0.5)
        time.sleep(3)

        print(f"\n{'strategy':11}{'deploy':>9}{'requests':>10}{'failed':>8}{'vs immediate':>14}")
        results = {}
        for n, strategy in enumerate(("immediate", "rolling", "canary", "bluegreen"), start=1):
            write(f"v{n}", strategy)
            stop = os.path.join(data, f"stop-{strategy}")
            loops = [subprocess.Popen(edge(data, r) + ["python3", "-c", LOOP, "hello.localhost", stop],
                                      stdout=subprocess.PIPE, text=True) for r in REGIONS]
            time.sleep(1)
            t = time.perf_counter()
            out = subprocess.run([*cli, "deploy", "-c", config], env=env, capture_output=True, text=True)
            took = time.perf_counter() - t
            if out.returncode != 0:
                print(f"bench: the {strategy} deploy failed:\n{out.stdout}{out.stderr}", file=sys.stderr)
            time.sleep(1)
            open(stop, "w").close()
            codes = {}
            for p in loops:
                got = json.loads(p.communicate()[0].strip().splitlines()[-1])
                for code, c in got["codes"].items():
                    codes[code] = codes.get(code, 0) + c
            total = sum(codes.values())
            failed = total - codes.get("200", 0)
            results[strategy] = took
            ratio = took / results["immediate"]
            print(f"{strategy:11}{took:>8.1f}s{total:>10}{failed:>8}{ratio:>13.2f}x"
                  + (f"   {codes}" if failed else ""))
    finally:
        if os.environ.get("KEEP") == "1":
            print(f"\nthe cluster is still up: {data}")
        else:
            subprocess.run([ALOFT, "--data-dir", data, "dev", "cluster", "down"], capture_output=True)
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
