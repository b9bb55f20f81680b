#!/usr/bin/python3
"""The elasticache backend end to end: the real cachekeeperd against the
ElastiCache API emulator (tests/emulator), which verifies every request's
SigV4 signature with botocore and moves groups through AWS's asynchronous
states. The emulator is started per test on a port it picks and stopped by
its pid, also on failure."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(cklib.SRCDIR, "tests", "emulator",
                        "elasticache_emulator.py")
PYTHON = "/usr/bin/python3"
AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def have_botocore():
    return subprocess.call([PYTHON, "-c", "import botocore"],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


class Emulator:
    def __init__(self, delay_ms=200, extra=()):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [PYTHON, EMULATOR, "--port", "0", "--delay-ms", str(delay_ms),
             "--exit-on-stdin-eof"] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("emulator did not start: %r\n%s" %
                               (line, self.stderr()))
        self.port = int(line)
        self.url = "http://127.0.0.1:%d" % self.port

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()
        self.log.close()

    def control(self, path, data=None, method=None):
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(
            self.url + "/_emulator/" + path, data=body,
            method=method or ("POST" if body is not None else "GET"),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def group(self, rg_id):
        for g in self.control("state")["replication_groups"]:
            if g["ReplicationGroupId"] == rg_id:
                return g
        return None

    def calls(self, kind="ok"):
        return self.control("calls").get(kind, {})

    def requests(self, action):
        return self.control("requests?action=" + action)["requests"]


class ElastiCacheTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not have_botocore():
            self.skipTest("Debian's python3-botocore is not installed "
                          "(scripts/install-deps installs it)")
        self.emu = Emulator()
        self.addCleanup(self.emu.stop)

    def start(self, env=None, creds=True, extra_conf=""):
        e = {"AWS_EC2_METADATA_DISABLED": "true",
             "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
             "AWS_CONFIG_FILE": "/nonexistent"}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN",
                  "AWS_WEB_IDENTITY_TOKEN_FILE"):
            e[k] = ""
        if creds:
            e.update({"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK})
        e.update(env or {})
        d = self.daemon(binary=DAEMON, env=e)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 2s\n"
                    "default_backend: elasticache\n"
                    "elasticache:\n  endpoint: %s\n  region: us-east-1\n"
                    "  poll_interval: 200ms\n%s"
                    % (d.specs, d.state, self.emu.url, extra_conf))
        d.start()
        self.d = d
        return d

    def group_spec(self, name="web", extra="cluster_size: 2\n"):
        return spec(name, backend="elasticache", extra=extra)

    def wait_synced(self, name="web", timeout=30, **want):
        d = self.d

        def ok():
            st = d.status(name)
            if not st or st["phase"] != "available":
                return None
            if st["observed_generation"] != st["generation"]:
                return None
            if st["plan"]["steps"]:
                return None
            for k, v in want.items():
                if st.get(k) != v:
                    return None
            return st
        d.alive()
        return wait_for(ok, timeout, what="%s available and in sync" % name)

    def test_create_cluster_mode_disabled(self):
        d = self.start()
        d.write("web.yaml", self.group_spec(extra="""
            cluster_size: 3
            instance_type: cache.t4g.small
            engine_version: "7.1"
            snapshot_window: "05:00-06:00"
            snapshot_retention_limit: 3
            maintenance_window: "sun:07:00-sun:08:00"
            tags: {team: web}
        """))
        st = self.wait_synced()
        g = self.emu.group("web")
        self.assertEqual(g["Status"], "available")
        self.assertEqual(len(g["MemberClusters"]), 3)
        self.assertEqual(g["CacheNodeType"], "cache.t4g.small")
        self.assertEqual(g["SnapshotWindow"], "05:00-06:00")
        self.assertEqual(g["SnapshotRetentionLimit"], 3)
        self.assertEqual(g["AutomaticFailover"], "enabled")
        ep = st["endpoints"]
        self.assertIn("primary", ep)
        self.assertEqual(len(ep["node_groups"][0]["members"]), 3)
        self.assertEqual(self.emu.calls().get("CreateReplicationGroup"), 1)
        # In sync: the next resyncs make no mutating call.
        before = self.emu.calls()
        time.sleep(4.5)
        after = self.emu.calls()
        for a in ("CreateReplicationGroup", "ModifyReplicationGroup",
                  "IncreaseReplicaCount", "DecreaseReplicaCount"):
            self.assertEqual(before.get(a), after.get(a), a)


if __name__ == "__main__":
    cklib.main()
