#!/usr/bin/env python3
"""Proxy benchmark: one small HTTP backend (an nginx worker answering `hello`) served three
ways, each proxy with one worker (throughput per core):

  nginx    reverse proxy, upstream keep-alive
  haproxy  `mode http`, connection reuse
  aloft    aloft's proxy (crates/proxy/examples/fixed.rs: the proxy with a fixed catalog)

first over plain HTTP, then over TLS (each proxy terminating TLS 1.3 with an ECDSA P-256
certificate: openssl's for nginx and HAProxy, aloft's development CA's for aloft).

wrk (keep-alive, CONNECTIONS at once, DURATION seconds, 2 threads) against each in turn, after a
short warm-up; prints requests/s, p50 and p99 and aloft's ratios to each peer. Never asserts.
Knobs: DURATION (default 10), CONNECTIONS (default 32).

Autostart (a request to a stopped app until its first byte) needs real machines: it is in
bench/runtime.py.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED = os.path.join(ROOT, "target/release/examples/fixed")
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
BACKEND, NGINX, HAPROXY, ALOFT = 18901, 18902, 18903, 18904
NGINX_TLS, HAPROXY_TLS, ALOFT_TLS = 18905, 18906, 18907


def binary(name):
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not found:
        sys.exit(f"bench: {name} is not installed (bench/proxy.sh installs it)")
    return found


def wait_port(port, proc, what):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {what} did not listen on {port}")


def sh_quiet(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stderr}")


def nginx_conf(work, name, body):
    path = os.path.join(work, f"{name}.conf")
    with open(path, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/{name}-body;
  proxy_temp_path {work}/{name}-proxy;
  fastcgi_temp_path {work}/{name}-fcgi;
  uwsgi_temp_path {work}/{name}-uwsgi;
  scgi_temp_path {work}/{name}-scgi;
  {body}
}}
""")
    return path


def wrk(port, scheme="http"):
    args = [binary("wrk"), "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency",
            "-H", "Host: bench.localhost", f"{scheme}://127.0.0.1:{port}/"]
    subprocess.run(args[:4] + ["-d2s"] + args[5:], capture_output=True)  # warm-up
    out = subprocess.run(args, capture_output=True, text=True).stdout
    if "Requests/sec" not in out:
        sys.exit(f"bench: wrk against port {port} failed:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out, re.M)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        lat[pct] = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  (warning: {errors.group(1)} non-2xx responses)")
    return rps, lat["50"], lat["99"]


def main():
    work = tempfile.mkdtemp(prefix="aloft-bench-proxy-")
    procs = []
    try:
        nginx = binary("nginx")
        backend = nginx_conf(work, "backend", f"""
  server {{ listen 127.0.0.1:{BACKEND}; keepalive_requests 1000000;
    location / {{ return 200 "hello\\n"; }} }}""")
        procs.append(subprocess.Popen([nginx, "-c", backend, "-p", work], stderr=subprocess.DEVNULL))
        wait_port(BACKEND, procs[-1], "the backend (nginx)")

        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        sh_quiet("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "2", "-subj", "/CN=bench.localhost",
                 "-addext", "subjectAltName=DNS:bench.localhost", "-keyout", key, "-out", cert)
        with open(os.path.join(work, "haproxy.pem"), "w") as f:
            f.write(open(cert).read() + open(key).read())
        location = """location / { proxy_pass http://backend; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host $host; }"""
        front = nginx_conf(work, "front", f"""
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 64; }}
  server {{ listen 127.0.0.1:{NGINX}; keepalive_requests 1000000; {location} }}
  server {{ listen 127.0.0.1:{NGINX_TLS} ssl; keepalive_requests 1000000;
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.3; {location} }}""")
        procs.append(subprocess.Popen([nginx, "-c", front, "-p", work], stderr=subprocess.DEVNULL))
        wait_port(NGINX, procs[-1], "nginx")

        hcfg = os.path.join(work, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write(f"""
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend front
  bind 127.0.0.1:{HAPROXY}
  bind 127.0.0.1:{HAPROXY_TLS} ssl crt {work}/haproxy.pem ssl-min-ver TLSv1.3
  default_backend machines
backend machines
  server b1 127.0.0.1:{BACKEND}
""")
        procs.append(subprocess.Popen([binary("haproxy"), "-f", hcfg, "-db"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(HAPROXY, procs[-1], "haproxy")

        if not os.path.exists(FIXED):
            sys.exit("bench: build aloft's proxy first (bench/proxy.sh does)")
        procs.append(subprocess.Popen([FIXED, f"127.0.0.1:{ALOFT}", f"bench=127.0.0.1:{BACKEND}", "1",
                                       "--tls", f"127.0.0.1:{ALOFT_TLS}", os.path.join(work, "ca")]))
        wait_port(ALOFT, procs[-1], "aloft's proxy")
        wait_port(ALOFT_TLS, procs[-1], "aloft's proxy (TLS)")

        for scheme, ports in (("http", (NGINX, HAPROXY, ALOFT)),
                              ("https", (NGINX_TLS, HAPROXY_TLS, ALOFT_TLS))):
            what = "HTTP/1.1" if scheme == "http" else "HTTPS (TLS 1.3, HTTP/1.1)"
            print(f"\n== {what} keep-alive, {CONNECTIONS} connections, {DURATION} s each, one proxy worker")
            results = {}
            for name, port in zip(("nginx", "haproxy", "aloft"), ports):
                rps, p50, p99 = wrk(port, scheme)
                results[name] = (rps, p50, p99)
                print(f"{name:8} {rps:10.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
            a = results["aloft"]
            for peer in ("nginx", "haproxy"):
                r = results[peer]
                print(f"aloft/{peer}: throughput {a[0] / r[0]:.2f}x, p99 {a[2] / r[2]:.2f}x")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
