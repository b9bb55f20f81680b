#!/usr/bin/python3
"""The AUTH token never leaks: a local replication group and a cluster-mode
cluster get a token (auth_token_file), go through create, a failover, a live
parameter change and scaling, and then everything the daemon writes is
searched for the token and for the daemon's own node password: its log,
every file under the state dir, the status files, the control socket's
GET /v1/clusters, /v1/clusters/NAME and /v1/metrics, and the metrics
endpoint. The token is in no file at all (node configs hold its SHA-256 in
an ACL rule); the daemon's password only in admin.pass and the nodes'
redis.conf (masterauth), both 0600. The daemon keeps secrets in memory
excluded from core dumps (a VmFlags "dd" mapping)."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON
from resp import Client

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
TOKEN = "Secr3t-token-ZQ9xK2vL7pW4mN8b"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("cachekeeperd", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


class SecretsTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(REDIS, os.X_OK):
            self.skipTest("redis-server is not installed")
        self.base = cklib.free_port_block()
        self.mport = cklib.free_port_block(size=1)

    def get(self, conn, path):
        conn.request("GET", path)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        self.assertEqual(r.status, 200, path)
        return data

    def test_token_never_written(self):
        tf = os.path.join(self.tmp, "app.token")
        with open(tf, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(tf, 0o600)
        d = self.daemon(binary=DAEMON)
        sock = os.path.join(d.tmp, "control.sock")
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "control_socket: %s\nmetrics_listen: 127.0.0.1:%d\n"
                    "log_level: debug\n"
                    "local:\n  port_range: %d-%d\n  failover_after: 1s\n"
                    "  cluster_node_timeout: 1000ms\n"
                    % (d.specs, d.state, sock, self.mport, self.base,
                       self.base + 99))
        d.start()
        web = ("cluster_size: 2\nport: %d\nauth_token_file: %s\n"
               % (self.base + 100, tf))
        d.write("web.yaml", spec("web", backend="local", extra=web))
        d.write("cat.yaml", spec("cat", backend="local", extra=(
            "port: %d\nauth_token_file: %s\nenable_transit_encryption: "
            "true\ncluster_mode:\n  enabled: true\n  num_node_groups: 2\n"
            "  replicas_per_node_group: 0\n" % (self.base + 102, tf))))

        def avail(name, nodes):
            def ok():
                d.alive()
                st = d.status(name)
                return st and st["phase"] == "available" and \
                    st["observed_generation"] == st["generation"] and \
                    len(st["endpoints"]["nodes"]) == nodes and st
            return wait_for(ok, 60, interval=0.1, what=name)
        st = avail("web", 2)
        avail("cat", 2)
        with Client(port=self.base + 100, password=TOKEN) as c:
            c.call("SET", "k", "v")
        # A failover, a live parameter change, scaling.
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        os.kill(prim["pid"], signal.SIGKILL)
        wait_for(lambda: d.status("web")["endpoints"]["failovers"] >= 1, 20,
                 what="failover")
        d.write("web.yaml", spec("web", backend="local", extra=web.replace(
            "cluster_size: 2", "cluster_size: 3") +
            "parameters:\n  maxmemory-policy: allkeys-lru\n"))
        avail("web", 3)

        admin = {}
        for name in ("web", "cat"):
            p = os.path.join(d.state, "local", name, "admin.pass")
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
            with open(p) as f:
                admin[name] = f.read().strip()
            self.assertGreaterEqual(len(admin[name]), 32)
        secrets = [TOKEN.encode()] + [a.encode() for a in admin.values()]

        # What the daemon answers.
        blobs = {"log": d.log().encode()}
        blobs["GET /v1/clusters"] = self.get(UnixHTTP(sock), "/v1/clusters")
        for name in ("web", "cat"):
            blobs["GET /v1/clusters/" + name] = self.get(
                UnixHTTP(sock), "/v1/clusters/" + name)
        blobs["GET /v1/metrics"] = self.get(UnixHTTP(sock), "/v1/metrics")
        blobs["metrics endpoint"] = self.get(http.client.HTTPConnection(
            "127.0.0.1", self.mport, timeout=10), "/metrics")
        json.loads(blobs["GET /v1/clusters"])
        answers = len(blobs)
        files = 0
        token_hash = "#" + hashlib.sha256(TOKEN.encode()).hexdigest()
        for root, _, fns in os.walk(d.state):
            for fn in fns:
                path = os.path.join(root, fn)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                files += 1
                with open(path, "rb") as f:
                    data = f.read()
                self.assertNotIn(TOKEN.encode(), data, path)
                if fn == "redis.conf":
                    self.assertEqual(os.stat(path).st_mode & 0o077, 0, path)
                    self.assertIn(token_hash.encode(), data, path)
                    continue        # masterauth: the daemon's password
                if fn == "admin.pass":
                    continue
                blobs[path] = data
        for what, data in blobs.items():
            for s in secrets:
                self.assertNotIn(s, data, "a secret in %s" % what)
        # The token sits in a mapping kept out of core dumps.
        with open("/proc/%d/smaps" % d.pid()) as f:
            flags = [l for l in f if l.startswith("VmFlags:")]
        self.assertTrue(any(" dd" in l for l in flags),
                        "no MADV_DONTDUMP mapping in the daemon")
        print("secrets: %d files, %d answers searched, 0 leaks" %
              (files, answers))


if __name__ == "__main__":
    cklib.main()
