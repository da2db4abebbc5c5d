#!/usr/bin/env python3
"""Availability prober for tests/bench/upgrade.sh (benchmark equipment, stdlib only).

  prober.py run --out SAMPLES.ndjson [--interval 0.05] [--timeout 1]
                [--target NAME=URL ...] [--project P --service SVC=PORT ...]
      Every --interval seconds, for each target, starts a thread that GETs the
      URL (so one slow answer does not hide the next sample) and records one
      line {"t": scheduled epoch time, "target", "ok", "latency", "status"}.
      With --project, each running container of each --service is probed on
      its own address on the project network (target "c:SVC:ID12"); the list
      is re-read from the Docker API every 0.5 s and at once on every
      container event of the project. A tick at which a service has no
      running container is recorded as {"target": "svc:SVC", "ok": false}.
      Runs until SIGTERM/SIGINT, then waits for the probes in flight.

  prober.py summary SAMPLES.ndjson [--from T] [--to T] [--origin T]
      JSON per target: samples, failed, longest failure window (first failed
      sample -> first ok sample after it, seconds from --origin), its length,
      total unreachable time, number of windows. Per service probed by
      container ("svc:SVC"): ticks, and the ticks at which NO container of
      the service answered (same window statistics).

  prober.py stamp [CMD ARGS...]
      Runs CMD (or reads stdin) and writes each line of its stdout as
      {"t": epoch, "line": "..."} as it arrives (time stamps of an opshost
      --json run's events); with CMD, first {"t", "start"} just before it is
      started and last {"t", "exit": code}; exits with CMD's code.
"""
import argparse
import http.client
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse

DOCKER_SOCK = "/var/run/docker.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def docker_get(path, timeout=5):
    conn = UnixHTTPConnection(DOCKER_SOCK, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return json.loads(resp.read() or b"null")
    finally:
        conn.close()


def probe(url, timeout):
    u = urllib.parse.urlsplit(url)
    start = time.monotonic()
    status = None
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        try:
            conn.request("GET", u.path or "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        finally:
            conn.close()
    except Exception as e:  # refused, reset, timeout: unreachable
        status = type(e).__name__
    return status == 200, status, time.monotonic() - start


class Containers:
    """Running containers of the project's services and their addresses."""

    def __init__(self, project, services):
        self.project = project
        self.services = services  # name -> port inside the container
        self.lock = threading.Lock()
        self.current = {s: [] for s in services}  # svc -> [(target, url)]
        self.changed = threading.Event()
        self.stopping = False

    def refresh(self):
        filters = json.dumps({"label": [f"com.docker.compose.project={self.project}"]})
        try:
            listing = docker_get("/containers/json?filters=" + urllib.parse.quote(filters))
        except Exception:
            return
        found = {s: [] for s in self.services}
        for c in listing or []:
            svc = (c.get("Labels") or {}).get("com.docker.compose.service")
            if svc not in self.services or c.get("State") != "running":
                continue
            if (c.get("Labels") or {}).get("com.docker.compose.oneoff") == "True":
                continue
            for net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values():
                ip = net.get("IPAddress")
                if ip:
                    found[svc].append((f"c:{svc}:{c['Id'][:12]}", f"http://{ip}:{self.services[svc]}/health"))
                    break
        with self.lock:
            self.current = found

    def snapshot(self):
        with self.lock:
            return {s: list(v) for s, v in self.current.items()}

    def poll_loop(self):
        while not self.stopping:
            self.refresh()
            self.changed.wait(0.5)
            self.changed.clear()

    def events_loop(self):
        filters = json.dumps({"type": ["container"], "label": [f"com.docker.compose.project={self.project}"]})
        while not self.stopping:
            try:
                conn = UnixHTTPConnection(DOCKER_SOCK, timeout=None)
                conn.request("GET", "/events?filters=" + urllib.parse.quote(filters))
                resp = conn.getresponse()
                while not self.stopping:
                    line = resp.readline()
                    if not line:
                        break
                    if line.strip():
                        self.refresh()  # start/die/destroy: re-read at once
                        self.changed.set()
            except Exception:
                time.sleep(0.2)


def run(args):
    targets = []
    for t in args.target or []:
        name, _, url = t.partition("=")
        targets.append((name, url))
    containers = None
    if args.project:
        services = {}
        for s in args.service or []:
            name, _, port = s.partition("=")
            services[name] = int(port)
        containers = Containers(args.project, services)
        containers.refresh()
        threading.Thread(target=containers.poll_loop, daemon=True).start()
        threading.Thread(target=containers.events_loop, daemon=True).start()

    out = open(args.out, "w", buffering=1)
    out_lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def record(t, target, ok, status, latency):
        with out_lock:
            out.write(json.dumps({"t": round(t, 4), "target": target, "ok": ok,
                                  "status": status, "latency": round(latency, 4)}) + "\n")

    def one(t, target, url):
        ok, status, latency = probe(url, args.timeout)
        record(t, target, ok, status, latency)

    threads = []
    ready = args.ready_file
    start = time.monotonic()
    wall0 = time.time()
    n = 0
    while not stop.is_set():
        mono = start + n * args.interval
        delay = mono - time.monotonic()
        if delay > 0:
            if stop.wait(delay):
                break
        t = wall0 + (mono - start)
        jobs = list(targets)
        if containers:
            for svc, found in containers.snapshot().items():
                if not found:
                    record(t, f"svc:{svc}", False, "no running container", 0.0)
                jobs.extend(found)
        for target, url in jobs:
            th = threading.Thread(target=one, args=(t, target, url), daemon=True)
            th.start()
            threads.append(th)
        if ready and n == 0:
            open(ready, "w").close()
        n += 1
        if len(threads) > 2000:
            threads = [th for th in threads if th.is_alive()]
        # A late tick (the machine was busy) is not skipped: it is probed late.
    if containers:
        containers.stopping = True
    for th in threads:
        th.join(args.timeout + 1)
    out.close()


def windows(samples):
    """samples: [(t, ok)] sorted by t. Failure runs as (first failed t, first ok t after)."""
    runs, begin = [], None
    for t, ok in samples:
        if not ok and begin is None:
            begin = t
        elif ok and begin is not None:
            runs.append((begin, t, True))
            begin = None
    if begin is not None:
        runs.append((begin, samples[-1][0], False))  # never recovered within the range
    return runs


def stats(samples, origin):
    runs = windows(samples)
    longest = max(runs, key=lambda r: r[1] - r[0], default=None)
    return {
        "samples": len(samples),
        "failed": sum(1 for _, ok in samples if not ok),
        "windows": len(runs),
        "longest_s": round(longest[1] - longest[0], 3) if longest else 0.0,
        "longest_window": ([round(longest[0] - origin, 3), round(longest[1] - origin, 3)]
                           if longest else None),
        "longest_recovered": longest[2] if longest else True,
        "unreachable_s": round(sum(b - a for a, b, _ in runs), 3),
    }


def summary(args):
    rows = [json.loads(l) for l in open(args.samples) if l.strip()]
    lo = args.from_ if args.from_ is not None else float("-inf")
    hi = args.to if args.to is not None else float("inf")
    rows = [r for r in rows if lo <= r["t"] <= hi]
    origin = args.origin if args.origin is not None else (min((r["t"] for r in rows), default=0.0))
    by_target, by_service = {}, {}
    for r in rows:
        tgt = r["target"]
        if tgt.startswith("c:") or tgt.startswith("svc:"):
            svc = tgt.split(":")[1]
            tick = by_service.setdefault(svc, {})
            tick[r["t"]] = tick.get(r["t"], False) or r["ok"]
            if tgt.startswith("svc:"):
                continue
        by_target.setdefault(tgt, []).append((r["t"], r["ok"]))
    result = {"targets": {}, "services": {}}
    for tgt, s in sorted(by_target.items()):
        s.sort()
        result["targets"][tgt] = stats(s, origin)
    for svc, ticks in sorted(by_service.items()):
        s = sorted(ticks.items())
        st = stats(s, origin)
        st["containers_seen"] = sorted({t for t in by_target if t.startswith(f"c:{svc}:")})
        result["services"][svc] = st
    json.dump(result, sys.stdout, indent=1)
    print()


def stamp(args):
    import subprocess
    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    if not args.cmd:
        for line in iter(sys.stdin.buffer.readline, b""):
            out({"t": time.time(), "line": line.decode(errors="replace").rstrip("\n")})
        return
    out({"t": time.time(), "start": args.cmd})
    proc = subprocess.Popen(args.cmd, stdout=subprocess.PIPE)
    for line in iter(proc.stdout.readline, b""):
        out({"t": time.time(), "line": line.decode(errors="replace").rstrip("\n")})
    code = proc.wait()
    out({"t": time.time(), "exit": code})
    sys.exit(code)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--interval", type=float, default=0.05)
    r.add_argument("--timeout", type=float, default=1.0)
    r.add_argument("--target", action="append")
    r.add_argument("--project")
    r.add_argument("--service", action="append", help="SERVICE=PORT inside the container")
    r.add_argument("--ready-file", help="created once the first tick is probed")
    s = sub.add_parser("summary")
    s.add_argument("samples")
    s.add_argument("--from", dest="from_", type=float)
    s.add_argument("--to", type=float)
    s.add_argument("--origin", type=float)
    st = sub.add_parser("stamp")
    st.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args()
    {"run": run, "summary": summary, "stamp": stamp}[args.mode](args)


if __name__ == "__main__":
    main()
