#!/usr/bin/python3
"""bench/failover.py: how long writes stop when a primary dies.

Side by side in one run:

  cachekeeper  a 3-node replication group (cluster_size 3, automatic
               failover) run by the real cachekeeperd with
               local.failover_after 1500ms. A trial kill -9s the primary
               (its pid from the status file) and times kill -> first
               successful SET through the primary endpoint, with a client
               that reconnects in a tight loop (10 ms sleep, short socket
               timeouts). Before the next trial the group must be back to
               available with 3 synced nodes (the daemon restarts the
               killed node as a replica).

  sentinel     the same three redis-server nodes (one master, two
               --replicaof) watched by three redis-sentinel processes,
               quorum 2, down-after-milliseconds 1500 (= failover_after),
               parallel-syncs 1. A trial kill -9s the master Sentinel names
               and times kill -> first successful SET the way a Sentinel
               client does it: ask the sentinels for the master's address
               (SENTINEL get-master-addr-by-name) and try a SET there; only
               a node that accepts the SET (a master) counts. Every round
               asks all three sentinels and tries every address they give,
               the most favourable client there is. Before the next trial
               the killed node is started again as a replica of the new
               master and all three sentinels must see two healthy replicas.

In both, a trial waits for the health described, then a random 0-0.5 s
(--seed) so kills do not always land at the same phase of the monitors'
timers, then kills. Each trial line also shows, from the daemon's or the
sentinels' logs, when the death was noticed and the replica promoted.

Prints each trial, then median, p95 (nearest rank), min and max in seconds
for each side, the ratio cachekeeper median / Sentinel median, and the
target line. It is a benchmark, not a test: it never fails on the figures
(exit 0); it exits 1 when it could not measure, 130 on Ctrl-C.

  bench/failover.py [--trials N] [--daemon PATH] [--only cachekeeper|sentinel]
                    [--seed N] [--keep]

Every process it starts (the daemon, the nodes the daemon starts, the
Sentinel-side nodes and sentinels) is stopped by its pid when it ends, also
on failure, Ctrl-C and SIGTERM. Everything listens on and talks to
127.0.0.1 only. Needs redis-server and redis-sentinel (scripts/install-deps
installs both).
"""

import argparse
import datetime
import hashlib
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))

import cklib                               # noqa: E402
from cklib import wait_for                 # noqa: E402
from resp import Client, RedisError        # noqa: E402

HOST = "127.0.0.1"
FAILOVER_AFTER_MS = 1500
SLEEP = 0.010            # between attempts of the measuring client
CONNECT_TIMEOUT = 0.25   # socket timeouts of the measuring client
TRIAL_TIMEOUT = 30.0     # kill -> first SET longer than this: trial failed
RECOVER_TIMEOUT = 60.0   # back to 3 healthy nodes between trials
# A random pause (0 to this) between "healthy and writable" and the kill,
# so kills do not land at the same phase of the daemon's monitor tick or
# of Sentinel's timers trial after trial (the wait for health would lock
# them just after a tick, the worst case for detection).
MAX_PAUSE = 0.5
RNG = random.Random(1)
MASTER_NAME = "bench"

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"

ERRORS = (OSError, ConnectionError, RedisError, ValueError)


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def find_daemon(arg):
    if arg:
        return os.path.abspath(arg)
    cands = []
    if os.environ.get("CK_BUILDDIR"):
        cands.append(os.path.join(os.environ["CK_BUILDDIR"], "cachekeeperd"))
    cands += [os.path.join(os.getcwd(), "cachekeeperd"),
              os.path.join(SRCDIR, "build", "cachekeeperd"),
              os.path.join(SRCDIR, "cachekeeperd")]
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return None


def try_set(port, key, value):
    """One SET on a fresh connection with short timeouts: True on +OK."""
    try:
        with Client(HOST, port, timeout=CONNECT_TIMEOUT) as c:
            return c.call("SET", key, value) == "OK"
    except ERRORS:
        return False


def ck_log_time(line):
    """Wall-clock time of a daemon log line (2026-11-28T14:06:54.737Z)."""
    ts = line.split(" ", 1)[0]
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def sentinel_log_time(line):
    """Wall-clock time of a Sentinel log line (PID:X 28 Nov 2026
    14:07:03.064 # ...), which Redis writes in local time."""
    ts = " ".join(line.split(" ")[1:5])
    return datetime.datetime.strptime(ts, "%d %b %Y %H:%M:%S.%f").timestamp()


def first_after(lines, t0, parse, *needles):
    """Seconds from t0 to the first line at or after t0 holding every
    needle, or None."""
    best = None
    for line in lines:
        if not all(n in line for n in needles):
            continue
        try:
            t = parse(line)
        except (ValueError, IndexError):
            continue
        if t >= t0 - 0.005 and (best is None or t < best):
            best = t
    return None if best is None else max(0.0, best - t0)


def fmt_phases(ph):
    return ", ".join("%s %s" % (k, "?" if v is None else "%.3f" % v)
                     for k, v in ph)


def summary(xs):
    s = sorted(xs)
    n = len(s)
    return {"n": n, "median": statistics.median(s),
            "p95": s[max(0, math.ceil(0.95 * n) - 1)],
            "min": s[0], "max": s[-1]}


# ---------------------------------------------------------------- cachekeeper

class CachekeeperSide:
    name = "cachekeeper"

    def __init__(self, tmp, base, daemon_bin):
        self.tmp = os.path.join(tmp, "ck")
        os.makedirs(self.tmp)
        self.base = base
        self.port = base + 100           # primary endpoint
        self.daemon_bin = daemon_bin
        self.d = None
        self.seen_pids = set()
        self.log_mark = 0
        self.logtext = ""

    def status(self):
        return self.status_of(self.d)

    def status_of(self, d):
        st = d.status("web")
        if st:
            for n in st.get("endpoints", {}).get("nodes", []):
                if n.get("pid"):
                    self.seen_pids.add(n["pid"])
        return st

    def setup(self):
        self.d = cklib.Daemon(self.tmp, binary=self.daemon_bin, args=())
        with open(self.d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "log_level: info\nlocal:\n  bind: %s\n"
                    "  port_range: %d-%d\n  failover_after: %dms\n"
                    % (self.d.specs, self.d.state, HOST, self.base,
                       self.base + 99, FAILOVER_AFTER_MS))
        self.d.start()
        self.d.write("web.yaml", cklib.spec(
            "web", backend="local",
            extra="cluster_size: 3\nenable_automatic_failover: true\n"
                  "port: %d\nreader_port: %d\n" % (self.port, self.port + 1)))
        self.wait_healthy(timeout=RECOVER_TIMEOUT)

    def healthy(self):
        self.d.alive()
        st = self.status()
        if not st or st.get("phase") != "available":
            return None
        if st.get("observed_generation") != st.get("generation"):
            return None
        ns = st["endpoints"].get("nodes", [])
        if len(ns) != 3:
            return None
        if sum(1 for n in ns if n["role"] == "primary") != 1:
            return None
        if not all(n.get("synced") and cklib.is_redis(n["pid"]) for n in ns):
            return None
        return st

    def wait_healthy(self, timeout):
        st = wait_for(self.healthy, timeout, interval=0.05,
                      what="cachekeeper group available with 3 synced nodes")
        wait_for(lambda: try_set(self.port, "ready", "1"), timeout,
                 interval=SLEEP, what="a write through the primary endpoint")
        return st

    def trial(self, i):
        st = self.wait_healthy(RECOVER_TIMEOUT)
        failovers = st["endpoints"]["failovers"]
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        pid = prim["pid"]
        if not cklib.is_redis(pid):
            raise RuntimeError("primary pid %d is not a redis-server" % pid)
        time.sleep(RNG.uniform(0, MAX_PAUSE))
        self.log_mark = len(self.d.log())
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        wall0 = time.time()
        deadline = t0 + TRIAL_TIMEOUT
        attempts = 0
        while True:
            attempts += 1
            if try_set(self.port, "after%d" % i, str(i)):
                took = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no successful SET %.0f s after the kill"
                                   % TRIAL_TIMEOUT)
            time.sleep(SLEEP)
        # The failover is counted, and the group recovers (next trial's
        # wait_healthy), before anything else happens.
        st = wait_for(lambda: (self.status()["endpoints"]["failovers"]
                               > failovers and self.status()),
                      RECOVER_TIMEOUT, interval=0.05, what="failover counted")
        new = [n for n in st["endpoints"]["nodes"]
               if n["role"] == "primary"][0]
        lines = self.d.log()[self.log_mark:].splitlines()
        phases = [
            ("detected", first_after(lines, wall0, ck_log_time,
                                     "node %s (port" % prim["id"],
                                     "is not answering")),
            ("promoting", first_after(lines, wall0, ck_log_time,
                                      "primary %s unreachable" % prim["id"])),
            ("promoted", first_after(lines, wall0, ck_log_time,
                                     "in place of %s" % prim["id"]))]
        extra = "%s -> %s; %s" % (prim["id"], new["id"], fmt_phases(phases))
        for line in lines:
            if "unreachable for" in line:
                extra += "; daemon: " + line.split("web: ", 1)[-1]
        if st["endpoints"]["failovers"] != failovers + 1:
            extra += "; %d failovers counted" % (
                st["endpoints"]["failovers"] - failovers)
        return took, attempts, extra, phases

    def teardown(self):
        if self.d is None:
            return
        d, self.d = self.d, None
        try:
            self.status_of(d)
        except ERRORS + (TypeError, KeyError):
            pass
        try:
            d.stop(timeout=5)  # SIGTERM by pid, SIGKILL after 5 s
        except (OSError, ValueError):
            pass
        d.close()          # whatever is left: SIGKILL by pid
        cklib.kill_nodes(d.state, self.seen_pids)
        self.logtext = d.log()

    def daemon_log(self):
        return self.d.log() if self.d else self.logtext


# ------------------------------------------------------------------- sentinel

class SentinelSide:
    name = "sentinel"

    def __init__(self, tmp, base):
        self.tmp = os.path.join(tmp, "sentinel")
        os.makedirs(self.tmp)
        # Ports inside the block cklib.free_port_block checked as free.
        self.rports = [base + 102, base + 103, base + 104]
        self.sports = [base + 105, base + 106, base + 107]
        self.nodes = {}         # port -> Popen
        self.sentinels = []     # Popen
        self.reaped = []        # killed nodes not yet waited for
        self.logs = []

    def start_node(self, port, master_port=None):
        d = os.path.join(self.tmp, "r%d" % port)
        os.makedirs(d, exist_ok=True)
        args = [REDIS_SERVER, "--port", str(port), "--bind", HOST,
                "--daemonize", "no", "--protected-mode", "yes",
                "--dir", d, "--save", "", "--appendonly", "no",
                "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0",
                "--logfile", os.path.join(d, "redis.log")]
        if master_port is not None:
            args += ["--replicaof", HOST, str(master_port)]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.nodes[port] = p

        def up():
            if p.poll() is not None:
                raise RuntimeError("redis-server on %d exited with %d" %
                                   (port, p.returncode))
            with Client(HOST, port, timeout=0.5) as c:
                return c.call("PING") == "PONG"
        wait_for(up, 10, what="redis-server on %d" % port)

    def start_sentinel(self, port, master_port):
        d = os.path.join(self.tmp, "s%d" % port)
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "sentinel.conf")
        logf = os.path.join(d, "sentinel.log")
        self.logs.append(logf)
        with open(conf, "w") as f:
            f.write("port %d\nbind %s\ndaemonize no\ndir %s\nlogfile %s\n"
                    "sentinel monitor %s %s %d 2\n"
                    "sentinel down-after-milliseconds %s %d\n"
                    "sentinel failover-timeout %s 10000\n"
                    "sentinel parallel-syncs %s 1\n"
                    % (port, HOST, d, logf, MASTER_NAME, HOST, master_port,
                       MASTER_NAME, FAILOVER_AFTER_MS, MASTER_NAME,
                       MASTER_NAME))
        p = subprocess.Popen([REDIS_SENTINEL, conf],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.sentinels.append(p)

        def up():
            if p.poll() is not None:
                raise RuntimeError("redis-sentinel on %d exited with %d" %
                                   (port, p.returncode))
            with Client(HOST, port, timeout=0.5) as c:
                return c.call("PING") == "PONG"
        wait_for(up, 10, what="redis-sentinel on %d" % port)

    def sentinel_call(self, sport, *args):
        with Client(HOST, sport, timeout=CONNECT_TIMEOUT) as c:
            return c.call(*args)

    def master_addrs(self):
        """Every distinct master address the sentinels give, in order."""
        out = []
        for sp in self.sports:
            try:
                r = self.sentinel_call(sp, "SENTINEL",
                                       "get-master-addr-by-name",
                                       MASTER_NAME)
            except ERRORS:
                continue
            if r and len(r) == 2:
                a = (r[0], int(r[1]))
                if a not in out:
                    out.append(a)
        return out

    def setup(self):
        if not os.access(REDIS_SENTINEL, os.X_OK):
            raise RuntimeError("%s is missing (scripts/install-deps installs "
                               "redis-sentinel)" % REDIS_SENTINEL)
        self.start_node(self.rports[0])
        for p in self.rports[1:]:
            self.start_node(p, self.rports[0])
        for sp in self.sports:
            self.start_sentinel(sp, self.rports[0])
        self.wait_healthy(RECOVER_TIMEOUT)

    def healthy(self):
        """Master agreed on by all three sentinels, no failover going on,
        two replicas that every sentinel sees up and that are in sync with
        that master; returns the master's port."""
        for p in self.sentinels:
            if p.poll() is not None:
                raise RuntimeError("a sentinel exited with %d" % p.returncode)
        addrs = set()
        for sp in self.sports:
            m = self.sentinel_call(sp, "SENTINEL", "master", MASTER_NAME)
            m = dict(zip(m[::2], m[1::2]))
            if m["flags"] != "master" or int(m["num-other-sentinels"]) != 2:
                return None
            addrs.add((m["ip"], int(m["port"])))
            if self.sentinel_call(sp, "SENTINEL", "ckquorum",
                                  MASTER_NAME)[:2] != "OK":
                return None
            ok = 0
            for r in self.sentinel_call(sp, "SENTINEL", "replicas",
                                        MASTER_NAME):
                r = dict(zip(r[::2], r[1::2]))
                if r["flags"] == "slave" and \
                        int(r["master-port"]) == int(m["port"]):
                    ok += 1
            if ok != 2:
                return None
        if len(addrs) != 1:
            return None
        host, mport = addrs.pop()
        with Client(host, mport, timeout=CONNECT_TIMEOUT) as c:
            info = c.info("replication")
            if info["role"] != "master" or info["connected_slaves"] != "2":
                return None
        for port in self.rports:
            if port == mport:
                continue
            with Client(HOST, port, timeout=CONNECT_TIMEOUT) as c:
                ri = c.info("replication")
                if ri["role"] != "slave" or \
                        int(ri["master_port"]) != mport or \
                        ri["master_link_status"] != "up" or \
                        ri.get("master_sync_in_progress") != "0":
                    return None
        return mport

    def healthy_or_none(self):
        try:
            return self.healthy()
        except RedisError:
            return None

    def wait_healthy(self, timeout):
        mport = wait_for(self.healthy_or_none, timeout, interval=0.05,
                         what="sentinel: agreed master and 2 healthy "
                              "replicas")
        wait_for(lambda: try_set(mport, "ready", "1"), timeout,
                 interval=SLEEP, what="a write to the master")
        return mport

    def trial(self, i):
        mport = self.wait_healthy(RECOVER_TIMEOUT)
        proc = self.nodes[mport]
        if proc.poll() is not None:
            raise RuntimeError("master on %d is not running" % mport)
        time.sleep(RNG.uniform(0, MAX_PAUSE))
        proc.kill()                          # SIGKILL to our child's pid
        t0 = time.monotonic()
        wall0 = time.time()
        deadline = t0 + TRIAL_TIMEOUT
        attempts = 0
        took = None
        while took is None:
            attempts += 1
            for host, port in self.master_addrs():
                if try_set(port, "after%d" % i, str(i)):
                    took = time.monotonic() - t0
                    newport = port
                    break
            else:
                if time.monotonic() > deadline:
                    raise RuntimeError("no successful SET %.0f s after the "
                                       "kill" % TRIAL_TIMEOUT)
                time.sleep(SLEEP)
        proc.wait()
        lines = self.sentinel_log().splitlines()
        m = "%s %s %d" % (MASTER_NAME, HOST, mport)
        phases = [
            ("sdown", first_after(lines, wall0, sentinel_log_time,
                                  "+sdown master " + m)),
            ("odown", first_after(lines, wall0, sentinel_log_time,
                                  "+odown master " + m)),
            ("elected", first_after(lines, wall0, sentinel_log_time,
                                    "+elected-leader master " + m)),
            ("promoted", first_after(lines, wall0, sentinel_log_time,
                                     "+promoted-slave", "@ " + m))]
        # The killed node comes back as a replica of the new master.
        self.start_node(mport, newport)
        return took, attempts, "%d -> %d; %s" % (mport, newport,
                                                 fmt_phases(phases)), phases

    def teardown(self):
        for p in list(self.nodes.values()) + self.sentinels:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def sentinel_log(self):
        out = []
        for lf in self.logs:
            try:
                with open(lf, errors="replace") as f:
                    out.append("==> %s <==\n%s" % (lf, f.read()))
            except OSError:
                pass
        return "\n".join(out)


# ----------------------------------------------------------------------- main

def run_side(side, trials, results, phases):
    log("== %s: setting up" % side.name)
    t = time.monotonic()
    side.setup()
    log("== %s: ready in %.1f s; %d trials" % (side.name,
                                               time.monotonic() - t, trials))
    for i in range(trials):
        took, attempts, extra, ph = side.trial(i)
        results.append(took)
        phases.append(ph)
        log("%s trial %2d: %.3f s  (%d attempts; %s)" %
            (side.name, i + 1, took, attempts, extra))


def fmt(s):
    return "n=%d  median %.3f  p95 %.3f  min %.3f  max %.3f" % (
        s["n"], s["median"], s["p95"], s["min"], s["max"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--daemon", help="cachekeeperd binary (default: "
                    "$CK_BUILDDIR, ./, build/ or the source directory)")
    ap.add_argument("--only", choices=("cachekeeper", "sentinel"))
    ap.add_argument("--seed", type=int, default=1,
                    help="seed of the random pauses before kills")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (logs)")
    a = ap.parse_args()
    if a.trials < 1:
        ap.error("--trials must be at least 1")
    RNG.seed(a.seed)

    daemon_bin = find_daemon(a.daemon)
    if a.only != "sentinel" and not daemon_bin:
        log("failover.py: no cachekeeperd; build it (./scripts/build) or "
            "give --daemon")
        return 1
    if not os.access(REDIS_SERVER, os.X_OK):
        log("failover.py: no redis-server (scripts/install-deps)")
        return 1
    if a.only != "cachekeeper" and not os.access(REDIS_SENTINEL, os.X_OK):
        log("failover.py: no redis-sentinel (scripts/install-deps)")
        return 1

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    tmp = tempfile.mkdtemp(prefix="ck-failover-bench-")
    results = {"cachekeeper": [], "sentinel": []}
    phases = {"cachekeeper": [], "sentinel": []}
    sides = []
    rc = 0
    started = time.monotonic()
    try:
        base = cklib.free_port_block(120)
        if a.only != "sentinel":
            with open(daemon_bin, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
            log("cachekeeperd: %s (sha256 %s)" % (daemon_bin, digest))
            sides.append(CachekeeperSide(tmp, base, daemon_bin))
        if a.only != "cachekeeper":
            sides.append(SentinelSide(tmp, base))
        log("redis-server: %s; failover_after = down-after-milliseconds "
            "= %d ms; ports %d-%d; temp %s" %
            (REDIS_SERVER, FAILOVER_AFTER_MS, base, base + 119, tmp))
        for side in sides:
            try:
                run_side(side, a.trials, results[side.name],
                         phases[side.name])
            except Interrupted:
                raise
            except Exception as e:      # noqa: BLE001 - report and go on
                rc = 1
                log("== %s: FAILED after %d trials: %s" %
                    (side.name, len(results[side.name]), e))
                tail = side.daemon_log() if isinstance(side, CachekeeperSide) \
                    else side.sentinel_log()
                log("---- last log lines ----\n" +
                    "\n".join(tail.splitlines()[-40:]))
            finally:
                side.teardown()
    except Interrupted as e:
        log("failover.py: interrupted (%s); stopping everything" % e)
        rc = 130
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for side in sides:
            side.teardown()
        if a.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    log("")
    log("kill -9 of the primary -> first successful SET, seconds "
        "(%.0f s in all)%s" % (time.monotonic() - started,
                               "" if rc == 0 else "; INCOMPLETE RUN"))
    sums = {}
    for name in ("cachekeeper", "sentinel"):
        if results[name]:
            sums[name] = summary(results[name])
            log("%-11s  %s" % (name, fmt(sums[name])))
            names = [k for k, _ in phases[name][0]] if phases[name] else []
            meds = []
            for j, k in enumerate(names):
                xs = [p[j][1] for p in phases[name] if p[j][1] is not None]
                meds.append("%s %s" % (k, "%.3f" % statistics.median(xs)
                                       if xs else "?"))
            if meds:
                log("%-11s  medians from the kill, from the logs: %s" %
                    ("", ", ".join(meds)))
        elif not a.only or a.only == name:
            log("%-11s  no trial completed" % name)
    if "cachekeeper" in sums and "sentinel" in sums:
        log("ratio cachekeeper median / sentinel median: %.2f" %
            (sums["cachekeeper"]["median"] / sums["sentinel"]["median"]))
    log("target: cachekeeper median <= 2 s and <= Sentinel's median")
    if "cachekeeper" in sums:
        ok2 = sums["cachekeeper"]["median"] <= 2.0
        oks = ("sentinel" not in sums or
               sums["cachekeeper"]["median"] <= sums["sentinel"]["median"])
        log("target %s" % ("met" if ok2 and oks else "MISSED"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
