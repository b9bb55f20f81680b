#!/usr/bin/python3
"""Local nodes with transit encryption and ACLs, end to end: the daemon
makes a private CA and a node certificate (local_tls.c), nodes serve TLS
only (plaintext TCP closed), replicas sync over TLS, the endpoints relay
TLS to the nodes, and with auth_token_file the application user `default`
(the token) cannot administer a node while the daemon's own user can.
Checked with the real `redis-cli --tls --cacert`. Every node a test's
daemon started is stopped by its pid when the test ends."""

import os
import shutil
import signal
import stat
import subprocess
import time

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
TOKEN = "tls-Token-0123456789abcdef"


def read(path):
    with open(path) as f:
        return f.read()


def cli_has_tls():
    try:
        p = subprocess.run([REDIS_CLI, "--help"], capture_output=True,
                           text=True, timeout=5)
    except OSError:
        return False
    return "--tls" in p.stdout + p.stderr


class TLSTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(REDIS, os.X_OK) or not cli_has_tls():
            self.skipTest("redis-server or a TLS-capable redis-cli is "
                          "not installed")
        self.base = cklib.free_port_block()
        self.port = self.base + 100
        self.reader = self.base + 101
        self.tf = os.path.join(self.tmp, "app.token")
        with open(self.tf, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(self.tf, 0o600)

    def start(self):
        d = self.daemon(binary=DAEMON)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\n  failover_after: 1s\n"
                    "  cluster_node_timeout: 1000ms\n"
                    % (d.specs, d.state, self.base, self.base + 99))
        d.start()
        return d

    def cli(self, port, *args, tls=True, auth=TOKEN, user=None, ca=None,
            cluster=False):
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port)]
        if tls:
            cmd += ["--tls", "--cacert", ca or self.ca]
        if user:
            cmd += ["--user", user]
        if auth:
            cmd += ["-a", auth, "--no-auth-warning"]
        if cluster:
            cmd += ["-c"]
        p = subprocess.run(cmd + list(args), capture_output=True, text=True,
                           timeout=10 * cklib.SLOW)
        return (p.stdout + p.stderr).strip()

    def wait_available(self, d, name, nodes):
        def ok():
            d.alive()
            st = d.status(name)
            if not st or st["phase"] != "available" or \
                    st["observed_generation"] != st["generation"] or \
                    len(st["endpoints"].get("nodes", [])) != nodes:
                return None
            return st
        return wait_for(ok, 40, interval=0.1, what="%s available" % name)

    def check_files(self, d, name):
        tdir = os.path.join(d.state, "local", name, "tls")
        self.assertEqual(stat.S_IMODE(os.stat(tdir).st_mode), 0o700)
        for k in ("ca.key", "node.key"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(tdir, k))
                                          .st_mode), 0o600, k)
        ap = os.path.join(d.state, "local", name, "admin.pass")
        self.assertEqual(stat.S_IMODE(os.stat(ap).st_mode), 0o600)

    def check_node(self, port):
        """Plaintext refused, no auth refused, the app user no admin."""
        out = self.cli(port, "PING", tls=False, auth=None)
        self.assertNotIn("PONG", out)
        out = self.cli(port, "GET", "x", auth=None)
        self.assertIn("NOAUTH", out)
        self.assertIn("PONG", self.cli(port, "PING"))
        for cmd in (["CONFIG", "SET", "maxmemory", "1"],
                    ["CONFIG", "GET", "requirepass"], ["DEBUG", "SLEEP", "0"],
                    ["SHUTDOWN", "NOSAVE"], ["REPLICAOF", "NO", "ONE"],
                    ["SLAVEOF", "NO", "ONE"], ["ACL", "LIST"],
                    ["MODULE", "LIST"], ["FAILOVER"], ["FLUSHALL"],
                    ["CLUSTER", "RESET"], ["BGSAVE"], ["MONITOR"]):
            out = self.cli(port, *cmd)
            # DEBUG is off for everyone (enable-debug-command no).
            self.assertTrue("NOPERM" in out or "DEBUG command not allowed"
                            in out, "%s: %s" % (cmd, out))
        out = self.cli(port, "ACL", "WHOAMI")
        self.assertEqual(out, "default")

    def test_replication_group_tls_acl_failover(self):
        d = self.start()
        d.write("web.yaml", spec("web", backend="local", extra=(
            "cluster_size: 3\nport: %d\nreader_port: %d\n"
            "enable_transit_encryption: true\nauth_token_file: %s\n"
            % (self.port, self.reader, self.tf))))
        st = self.wait_available(d, "web", 3)
        self.ca = st["endpoints"]["tls_ca"]
        self.assertTrue(os.path.isfile(self.ca), self.ca)
        self.check_files(d, "web")
        conf = read(os.path.join(d.state, "local", "web", "n1",
                                 "redis.conf"))
        self.assertIn("port 0\n", conf)
        self.assertIn("tls-replication yes", conf)
        self.assertNotIn(TOKEN, conf)
        for n in st["endpoints"]["nodes"]:
            self.check_node(int(n["address"].rsplit(":", 1)[1]))
        # The endpoints relay TLS: plaintext gets nothing, TLS works.
        self.assertNotIn("PONG", self.cli(self.port, "PING", tls=False))
        self.assertEqual(self.cli(self.port, "SET", "k1", "v1"), "OK")
        # Replication works over TLS.
        for n in st["endpoints"]["nodes"]:
            port = int(n["address"].rsplit(":", 1)[1])
            wait_for(lambda: self.cli(port, "GET", "k1") == "v1", 10,
                     what="k1 on %s" % n["id"])
        self.assertEqual(self.cli(self.reader, "GET", "k1"), "v1")
        # A failover with TLS on: kill -9 the primary.
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        os.kill(prim["pid"], signal.SIGKILL)

        def moved():
            s = d.status("web")
            p = [n for n in s["endpoints"]["nodes"] if n["role"] ==
                 "primary"]
            return p and p[0]["id"] != prim["id"] and s
        wait_for(moved, 20, interval=0.1, what="a new primary")
        wait_for(lambda: self.cli(self.port, "SET", "k2", "v2") == "OK", 20,
                 interval=0.2, what="a write through the endpoint")
        self.assertEqual(self.cli(self.port, "GET", "k1"), "v1")
        st = self.wait_available(d, "web", 3)
        for n in st["endpoints"]["nodes"]:
            port = int(n["address"].rsplit(":", 1)[1])
            wait_for(lambda: self.cli(port, "GET", "k2") == "v2", 20,
                     interval=0.2, what="k2 on %s" % n["id"])

    def test_cluster_mode_tls(self):
        d = self.start()
        d.write("cat.yaml", spec("cat", backend="local", extra=(
            "port: %d\nenable_transit_encryption: true\n"
            "auth_token_file: %s\ncluster_mode:\n  enabled: true\n"
            "  num_node_groups: 2\n  replicas_per_node_group: 1\n"
            % (self.port, self.tf))))

        def ok():
            d.alive()
            st = d.status("cat")
            return st and st["phase"] == "available" and \
                st["endpoints"].get("cluster_state") == "ok" and st
        st = wait_for(ok, 60, interval=0.2, what="cat available")
        self.ca = st["endpoints"]["tls_ca"]
        self.check_files(d, "cat")
        port = int(st["endpoints"]["nodes"][0]["address"].rsplit(":", 1)[1])
        self.check_node(port)
        for i in range(20):
            self.assertEqual(self.cli(port, "SET", "key%d" % i, str(i),
                                      cluster=True), "OK")
        for i in range(20):
            self.assertEqual(self.cli(self.port, "GET", "key%d" % i,
                                      cluster=True), str(i))
        out = self.cli(port, "CLUSTER", "SETSLOT", "0", "STABLE")
        self.assertIn("NOPERM", out)
        # redis-cli --cluster check over TLS, as the daemon's user.
        pw = read(os.path.join(d.state, "local", "cat",
                               "admin.pass")).strip()
        p = subprocess.run([REDIS_CLI, "--tls", "--cacert", self.ca,
                            "--user", "ck-admin", "-a", pw,
                            "--no-auth-warning", "--cluster", "check",
                            "127.0.0.1:%d" % port], capture_output=True,
                           text=True, timeout=20)
        self.assertIn("[OK] All 16384 slots covered", p.stdout, p.stdout)
        # A primary killed: its replica takes over over the TLS bus.
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        os.kill(prim["pid"], signal.SIGKILL)
        time.sleep(1)
        st = wait_for(ok, 60, interval=0.2, what="cat available again")
        for i in range(20):
            wait_for(lambda: self.cli(self.port, "GET", "key%d" % i,
                                      cluster=True) == str(i), 20,
                     interval=0.2, what="key%d after failover" % i)


if __name__ == "__main__":
    cklib.main()
