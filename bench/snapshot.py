#!/usr/bin/python3
"""bench/snapshot.py: how long a local snapshot takes and how fast its copy
runs next to cp(1).

A one-node local cluster run by cachekeeperd (so the BGSAVE runs on the
primary, as it does when a shard has no replica) is filled with --size MiB
of data (64 KiB values), then `cachekeeper snapshot` is timed twice: once
plain and once with enable_at_rest_encryption (a key in a 0600 file). For
each: wall time of the command (BGSAVE start to manifest written), and
the daemon's own split (its "snapshot ... complete" line: BGSAVE, then the
copy with SHA-256, fsync and, encrypted, AES-256-GCM). The copy's MiB/s is
set against `cp` of the same RDB followed by `sync FILE` (the daemon's
copy fsyncs too), on the same disk.

It is a benchmark, not a test: it prints figures and exits 0 (1 when it
could not measure). Every process it starts is stopped by its pid.

  bench/snapshot.py [--size MiB] [--daemon PATH] [--cli PATH]
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import cklib  # noqa: E402
from resp import Client  # noqa: E402


def fill(port, mib):
    s = socket.create_connection(("127.0.0.1", port))
    val = os.urandom(32 * 1024).hex()       # 64 KiB, incompressible
    n = mib * 16
    batch = []
    for i in range(n):
        k = "key:%d" % i
        batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(k), k.encode(), len(val), val.encode()))
        if len(batch) == 64 or i == n - 1:
            s.sendall(b"".join(batch))
            want = len(batch)
            got = b""
            while got.count(b"\r\n") < want:
                got += s.recv(65536)
            batch = []
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256, help="MiB of data")
    ap.add_argument("--daemon", default=cklib.DAEMON)
    ap.add_argument("--cli", default=cklib.CLI)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ck-bench-snap-")
    base = cklib.free_port_block()
    port = base + 100
    key = os.path.join(tmp, "backup.key")
    with open(key, "w") as f:
        f.write(os.urandom(32).hex())
    os.chmod(key, 0o600)
    specs = os.path.join(tmp, "specs")
    state = os.path.join(tmp, "state")
    os.makedirs(specs)
    conf = os.path.join(tmp, "cachekeeperd.yaml")
    sock = os.path.join(tmp, "control.sock")
    with open(conf, "w") as f:
        f.write("clusters_dir: %s\nstate_dir: %s\ncontrol_socket: %s\n"
                "backup_key_file: %s\nlocal:\n  port_range: %d-%d\n"
                "  instance_types:\n    cache.t4g.small: %dmb\n"
                % (specs, state, sock, key, base, base + 99, a.size * 3))
    log = open(os.path.join(tmp, "daemon.log"), "wb")
    d = subprocess.Popen([a.daemon, "-f", conf], stdout=log,
                         stderr=subprocess.STDOUT)
    now = datetime.datetime.now(datetime.timezone.utc)
    w = now + datetime.timedelta(hours=12)
    rc = 1
    try:
        def write_spec(enc):
            with open(os.path.join(specs, "b.yaml.tmp"), "w") as f:
                f.write(cklib.spec("b", backend="local", extra=(
                    "cluster_size: 1\nport: %d\ninstance_type: "
                    "cache.t4g.small\nsnapshot_window: \"%02d:00-%02d:00\"\n"
                    "enable_at_rest_encryption: %s\n"
                    % (port, w.hour, (w.hour + 1) % 24,
                       "true" if enc else "false"))))
            os.rename(os.path.join(specs, "b.yaml.tmp"),
                      os.path.join(specs, "b.yaml"))

        def status():
            import json
            with open(os.path.join(state, "status", "b.json")) as f:
                return json.load(f)
        write_spec(False)
        cklib.wait_for(lambda: status()["phase"] == "available", 60,
                       what="cluster available")
        t0 = time.monotonic()
        fill(port, a.size)
        print("filled %d MiB in %.1fs" % (a.size, time.monotonic() - t0))
        results = []
        for enc in (False, True):
            write_spec(enc)
            cklib.wait_for(lambda: status()["observed_generation"] ==
                           status()["generation"] and
                           status()["phase"] == "available", 30,
                           what="spec applied")
            name = "bench-%s" % ("enc" if enc else "plain")
            t0 = time.monotonic()
            p = subprocess.run([a.cli, "--socket", sock, "snapshot", "b",
                                "--name", name], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=600)
            wall = time.monotonic() - t0
            if p.returncode != 0:
                print(p.stderr.decode())
                return 1
            m = re.search(r"BGSAVE ([0-9.]+)s, copy ([0-9.]+)s",
                          p.stdout.decode())
            sdir = os.path.join(state, "backups", "b", name)
            size = os.path.getsize(os.path.join(sdir, "s1.rdb"))
            results.append((name, wall, float(m.group(1)),
                            float(m.group(2)), size))
        rdb = os.path.join(state, "local", "b", "n1", "dump.rdb")
        dst = os.path.join(tmp, "cp.rdb")
        t0 = time.monotonic()
        subprocess.run(["cp", rdb, dst], check=True)
        subprocess.run(["sync", dst], check=True)
        cp_s = time.monotonic() - t0
        rsize = os.path.getsize(rdb)
        mib = 1024 * 1024
        print("RDB %.1f MiB" % (rsize / mib))
        print("%-12s %8s %8s %8s %10s" % ("snapshot", "total_s", "bgsave_s",
                                         "copy_s", "copy_MiB/s"))
        for name, wall, bg, cp, size in results:
            print("%-12s %8.2f %8.2f %8.2f %10.0f" % (name, wall, bg, cp,
                                                     rsize / mib / cp))
        print("%-12s %8s %8s %8.2f %10.0f" % ("cp+sync", "-", "-", cp_s,
                                             rsize / mib / cp_s))
        rc = 0
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(20)
        except subprocess.TimeoutExpired:
            d.kill()
        cklib.kill_nodes(state)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
