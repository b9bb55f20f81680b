#!/usr/bin/python3
"""ElastiCache backend at fleet scale, against the API emulator.

    bench/ec_fleet.py [--groups 1000] [--daemon build/cachekeeperd]

Starts tests/emulator/elasticache_emulator.py and the real cachekeeperd on
127.0.0.1, writes GROUPS replication group specs (100 a file), and prints:
  - the time until every group is available and in sync, created
    concurrently through the daemon (its own call rate limit applies);
  - API calls per steady-state resync, by action, against the pattern
    Terraform's AWS provider uses to refresh the same groups (at least a
    DescribeReplicationGroups and a DescribeCacheClusters per group, plus
    ListTagsForResource: counted per resource, not measured, since
    Terraform is not part of Debian);
  - the daemon's CPU time per resync and its peak RSS.
Every process it starts is stopped by its pid when it ends, also on
Ctrl-C. Not a test: it prints figures and never fails on them.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
EMULATOR = os.path.join(TOP, "tests", "emulator", "elasticache_emulator.py")
PY = "/usr/bin/python3"


def control(url, path, data=None):
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url + "/_emulator/" + path, data=body,
                                 method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / tick
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, rss, hwm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--resync", type=int, default=10, help="seconds")
    ap.add_argument("--rounds", type=int, default=3,
                    help="steady-state resyncs measured")
    ap.add_argument("--rate", type=int, default=100,
                    help="daemon's max_calls_per_second")
    ap.add_argument("--daemon", default=None)
    a = ap.parse_args()
    daemon = a.daemon or next(
        (p for p in (os.path.join(TOP, "build", "cachekeeperd"),
                     os.path.join(os.getcwd(), "cachekeeperd"))
         if os.access(p, os.X_OK)), None)
    if daemon is None:
        sys.exit("no cachekeeperd: build first or pass --daemon")
    tmp = tempfile.mkdtemp(prefix="ck-ecbench-")
    procs = []

    def stop_all(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGINT, lambda *x: (stop_all(), sys.exit(130)))
    try:
        emu = subprocess.Popen(
            [PY, EMULATOR, "--port", "0", "--delay-ms", "500",
             "--exit-on-stdin-eof",
             "--config", json.dumps({"cluster_quota": 10 * a.groups})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        procs.append(emu)
        port = int(emu.stdout.readline())
        url = "http://127.0.0.1:%d" % port
        specs = os.path.join(tmp, "specs")
        os.makedirs(specs)
        conf = os.path.join(tmp, "cachekeeperd.yaml")
        with open(conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s/state\n"
                    "resync_interval: %ds\nlog_level: notice\n"
                    "default_backend: elasticache\n"
                    "elasticache:\n  endpoint: %s\n  region: us-east-1\n"
                    "  poll_interval: 1s\n  max_calls_per_second: %d\n"
                    % (specs, tmp, a.resync, url, a.rate))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                   AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG+bPxRfi"
                   "CYEXAMPLEKEY", AWS_EC2_METADATA_DISABLED="true",
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
                   AWS_CONFIG_FILE="/nonexistent")
        log = open(os.path.join(tmp, "daemon.log"), "w")
        d = subprocess.Popen([daemon, "--config", conf], env=env,
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append(d)
        time.sleep(0.5)
        t0 = time.monotonic()
        for f in range(0, a.groups, 100):
            docs = []
            for i in range(f, min(f + 100, a.groups)):
                docs.append("apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
                            "metadata:\n  name: g%04d\nspec:\n"
                            "  cluster_size: 1\n" % i)
            with open(os.path.join(specs, ".f%02d.tmp" % (f // 100)),
                      "w") as fh:
                fh.write("---\n".join(docs))
            os.rename(os.path.join(specs, ".f%02d.tmp" % (f // 100)),
                      os.path.join(specs, "f%02d.yaml" % (f // 100)))
        sdir = os.path.join(tmp, "state", "status")
        while True:
            done = 0
            for n in os.listdir(sdir) if os.path.isdir(sdir) else []:
                try:
                    with open(os.path.join(sdir, n)) as fh:
                        st = json.load(fh)
                except (OSError, ValueError):
                    continue
                if st["phase"] == "available" and \
                        st["observed_generation"] == st["generation"] and \
                        not st["plan"]["steps"]:
                    done += 1
            if done == a.groups:
                break
            if d.poll() is not None:
                sys.exit("daemon exited")
            time.sleep(0.5)
        t_create = time.monotonic() - t0
        creates = control(url, "calls")["ok"].get("CreateReplicationGroup")
        # Steady state.
        time.sleep(a.resync)
        control(url, "calls/reset", {})
        cpu0, _, _ = proc_stat(d.pid)
        time.sleep(a.resync * a.rounds)
        cpu1, rss, hwm = proc_stat(d.pid)
        calls = control(url, "calls")["received"]
        total = sum(calls.values())
        per = total / a.rounds
        terraform = 3 * a.groups
        print("groups: %d (cluster mode disabled, 1 node each), "
              "emulator delay 500 ms, daemon rate limit %d calls/s"
              % (a.groups, a.rate))
        print("create all concurrently to all available and in sync: "
              "%.1f s (%d CreateReplicationGroup)" % (t_create, creates))
        print("steady state: %.1f API calls per resync (%s)" % (
            per, ", ".join("%s %.1f" % (k, v / a.rounds)
                           for k, v in sorted(calls.items()))))
        print("  target ceil(%d/100) = %d describe pages per resync"
              % (a.groups, -(-a.groups // 100)))
        print("  Terraform's refresh pattern: >= %d calls (Describe"
              "ReplicationGroups + DescribeCacheClusters + ListTags"
              "ForResource per group); ratio cachekeeper/terraform = %.4f"
              % (terraform, per / terraform))
        print("daemon CPU per resync: %.3f s; RSS %.1f MiB, peak %.1f MiB"
              % ((cpu1 - cpu0) / a.rounds, rss / 2**20, hwm / 2**20))
    finally:
        stop_all()


if __name__ == "__main__":
    main()
