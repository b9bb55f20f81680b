#!/usr/bin/python3
"""The operations surface end to end: the control socket's endpoints, every
`cachekeeper` command with its error paths and exit codes, `status --watch`
on a long operation, and the Prometheus metrics after a create and a
failover on the local backend (real redis-server nodes)."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import textwrap
import time

import cklib
from cklib import DaemonTest, spec, wait_for, CLI, TEST_DAEMON, DAEMON

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("cachekeeperd", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def metric_lines(text):
    """Parse the Prometheus text format strictly: {(name, labels): value}."""
    out = {}
    typed = set()
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? '
                        r'(-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')
    lab = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = sample.match(line)
        assert m, "not a sample line: %r" % line
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, "no TYPE for %s" % name
        labels = tuple(sorted(lab.findall(m.group(3) or "")))
        out[(name, labels)] = float(m.group(4))
    return out


class CliTest(DaemonTest):

    def start(self, binary=TEST_DAEMON, extra=""):
        d = self.daemon(binary=binary)
        self.sock = os.path.join(d.tmp, "control.sock")
        self.mport = cklib.free_port_block(size=1)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 60s\n"
                    "control_socket: %s\nmetrics_listen: 127.0.0.1:%d\n%s"
                    % (d.specs, d.state, self.sock, self.mport, extra))
        d.start()
        wait_for(lambda: os.path.exists(self.sock), what="control socket")
        self.d = d
        return d

    def cli(self, *args, env=None, user=None):
        e = dict(os.environ, CACHEKEEPER_SOCKET=self.sock, NO_COLOR="1")
        e.update(env or {})
        cmd = [CLI] + list(args)
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user,
                   "--clear-groups"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, env=e,
                           timeout=60)
        return p.returncode, p.stdout, p.stderr

    def req(self, method, path, body=None):
        c = UnixHTTP(self.sock)
        try:
            c.request(method, path, body=body, headers={
                "Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            c.close()

    def alpha(self, extra="cluster_size: 3\n", labels=None, name="alpha"):
        return spec(name, extra=extra, labels=labels)

    def test_control_socket_endpoints(self):
        d = self.start()
        d.write("a.yaml", self.alpha())
        d.wait_status("alpha", phase="available")
        st, h = self.req("GET", "/v1/health")
        self.assertEqual((st, h["status"], h["ready"], h["clusters"]),
                         (200, "ok", True, 1))
        self.assertIn("1 cluster", h["summary"])
        st, a = self.req("GET", "/v1/clusters")
        self.assertEqual([c["name"] for c in a["clusters"]], ["alpha"])
        st, c = self.req("GET", "/v1/clusters/alpha")
        self.assertEqual((st, c["phase"]), (200, "available"))
        st, p = self.req("GET", "/v1/clusters/alpha/plan")
        self.assertEqual((st, p["changes"], p["plan"]["steps"]),
                         (200, False, []))
        st, r = self.req("POST", "/v1/clusters/alpha/reconcile")
        self.assertEqual(st, 202)
        st, r = self.req("POST", "/v1/clusters/alpha/snapshot",
                         json.dumps({"name": "nightly"}))
        self.assertEqual(st, 200)
        self.assertIn("nightly", r["message"])
        st, r = self.req("POST", "/v1/clusters/alpha/failover",
                         json.dumps({"shard": "0001"}))
        self.assertEqual(st, 200)
        wait_for(lambda: d.status("alpha").get("last_operation", {}).get(
            "operation") == "failover of shard 0001", what="recorded")
        body = json.dumps({"files": [{"path": "x.yaml", "content":
                                      self.alpha("cluster_size: 4\n")}]})
        st, r = self.req("POST", "/v1/plan", body)
        self.assertEqual(st, 200)
        self.assertEqual(r["plans"][0]["plan"]["steps"][0]["action"],
                         "add-replicas")
        # Errors: JSON with a message and a proper status code.
        for method, path, body, code in (
                ("GET", "/v1/clusters/nope", None, 404),
                ("POST", "/v1/clusters/nope/snapshot", "{}", 404),
                ("GET", "/v1/nothing", None, 404),
                ("GET", "/v1/clusters/alpha/snapshot", None, 405),
                ("POST", "/v1/clusters/alpha/snapshot", "[1,", 400),
                ("POST", "/v1/clusters/alpha/snapshot",
                 json.dumps({"name": "Bad Name"}), 400),
                ("POST", "/v1/plan", json.dumps({"x": 1}), 400)):
            st, r = self.req(method, path, body)
            self.assertEqual(st, code, (method, path))
            self.assertEqual(r["error"]["status"], code)
            self.assertTrue(r["error"]["message"])
        # Bounded: a body over the limit is refused, the daemon lives on.
        try:
            st, _ = self.req("POST", "/v1/plan", "x" * (17 << 20))
            self.assertEqual(st, 413)
        except (ConnectionError, OSError):
            pass
        self.assertEqual(self.req("GET", "/v1/health")[0], 200)

    def test_status_command(self):
        d = self.start()
        d.write("a.yaml", self.alpha())
        d.write("b.yaml", self.alpha(name="beta"))
        d.wait_status("alpha", phase="available")
        d.wait_status("beta", phase="available")
        rc, out, err = self.cli("status")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "BACKEND", "PHASE",
                                            "SHARDS", "NODES", "PRIMARY",
                                            "LAST", "BACKUP", "MESSAGE"])
        self.assertEqual([l.split()[0] for l in lines[1:]],
                         ["alpha", "beta"])
        self.assertEqual(lines[1].split()[1:3], ["test", "available"])
        self.assertNotIn("\033[", out)
        rc, out, _ = self.cli("status", "-o", "json")
        self.assertEqual(rc, 0)
        self.assertEqual(len(json.loads(out)["clusters"]), 2)
        rc, out, _ = self.cli("status", "alpha", "-o", "yaml")
        self.assertEqual(rc, 0)
        self.assertIn("name: alpha\n", out)
        self.assertIn("phase: available\n", out)
        rc, out, err = self.cli("status", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("no cluster named 'nope'", err)
        rc, _, err = self.cli("status", "-o", "xml")
        self.assertEqual(rc, 2)
        self.assertIn("table, json or yaml", err)
        rc, out, _ = self.cli("status", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: cachekeeper status", out)

    def test_daemon_not_running_and_bad_socket(self):
        missing = os.path.join(self.tmp, "no", "such.sock")
        self.sock = missing
        for args in (["status"], ["plan"], ["snapshot", "x"],
                     ["--socket", missing, "reconcile", "x"]):
            rc, out, err = self.cli(*args)
            self.assertEqual(rc, 1, args)
            self.assertIn("cannot reach cachekeeperd at %s" % missing, err)
            self.assertIn("is it running?", err)
        # A path that is not a socket.
        self.sock = self.tmp
        rc, _, err = self.cli("status")
        self.assertEqual(rc, 1)
        self.assertIn("cannot reach cachekeeperd", err)
        rc, _, err = self.cli("bogus")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'bogus'", err)
        rc, out, _ = self.cli("--help")
        for c in ("status", "plan", "validate", "reconcile", "snapshot",
                  "failover"):
            self.assertIn("  " + c, out)

    def test_plan_exit_codes(self):
        d = self.start()
        d.write("a.yaml", self.alpha())
        d.wait_status("alpha", phase="available")
        same = os.path.join(self.tmp, "same")
        os.makedirs(same)
        with open(os.path.join(same, "a.yaml"), "w") as f:
            f.write(self.alpha())
        rc, out, err = self.cli("plan", same)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("cluster alpha (test):\n  no changes", out)
        change = os.path.join(self.tmp, "change")
        os.makedirs(os.path.join(change, "team"))
        with open(os.path.join(change, "team", "a.yaml"), "w") as f:
            f.write(self.alpha("cluster_size: 5\n") + "---\n" +
                    self.alpha(name="gamma"))
        with open(os.path.join(change, ".hidden.yaml"), "w") as f:
            f.write("not: [valid")
        rc, out, err = self.cli("plan", change)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("+ replicas per shard: 2 -> 4", out)
        self.assertIn("cluster gamma (test), new to the daemon:", out)
        self.assertIn("+ create cluster", out)
        self.assertIn("Plan: 2 clusters to change, 0 unchanged.", out)
        # Nothing was applied.
        self.assertEqual(d.status("alpha")["plan"]["steps"], [])
        self.assertIsNone(d.status("gamma"))
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(self.alpha("cluster_size: 9\n"))
        rc, out, err = self.cli("plan", bad)
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"bad\.yaml:7:17: spec\.cluster_size must be "
                              r"1\.\.6, got 9")
        rc, out, _ = self.cli("plan", "alpha")
        self.assertEqual(rc, 0)
        rc, out, _ = self.cli("plan", "-o", "json", change)
        self.assertEqual(rc, 2)
        self.assertEqual(len(json.loads(out)["plans"]), 2)
        rc, _, err = self.cli("plan", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("no cluster named 'nope'", err)

    def test_operations_and_their_errors(self):
        d = self.start()
        d.write("a.yaml", self.alpha(labels={"test-op-ms": "3000"}))
        d.wait_status("alpha", phase="available", timeout=10)
        rc, out, err = self.cli("snapshot", "alpha", "--name", "before")
        self.assertEqual((rc, out), (0, "alpha: test snapshot before of "
                                        "alpha taken\n"), err)
        rc, out, err = self.cli("snapshot", "alpha", "--name", "fail-now")
        self.assertEqual(rc, 1)
        self.assertIn("snapshot fail-now failed", err)
        rc, out, err = self.cli("failover", "alpha", "--shard", "0002")
        self.assertEqual(rc, 0, err)
        self.assertIn("shard 0002", out)
        rc, out, err = self.cli("reconcile", "alpha")
        self.assertEqual(rc, 0, err)
        # While a step runs the cluster is busy: 409, said plainly.
        d.write("a.yaml", self.alpha("cluster_size: 5\n",
                                     labels={"test-op-ms": "3000"}))
        d.wait_status("alpha", phase="modifying")
        rc, out, err = self.cli("snapshot", "alpha")
        self.assertEqual(rc, 1)
        self.assertIn("busy", err)
        for args in (["snapshot"], ["failover", "a", "b"],
                     ["snapshot", "alpha", "--bogus"]):
            self.assertEqual(self.cli(*args)[0], 2, args)

    def test_mutations_need_the_daemons_user_or_group(self):
        d = self.start()
        d.write("a.yaml", self.alpha())
        d.wait_status("alpha", phase="available")
        if shutil.which("setpriv") is None:
            self.skipTest("setpriv (util-linux) is not installed")
        nobody = 65534
        # The socket is 0660: another user cannot even connect.
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o660)
        rc, _, err = self.cli("status", user=nobody)
        self.assertEqual(rc, 1)
        self.assertIn("cannot reach", err)
        # Even with the socket opened up, reading works, changing does not.
        os.chmod(self.sock, 0o666)
        os.chmod(self.tmp, 0o755)
        rc, out, err = self.cli("status", user=nobody)
        self.assertEqual(rc, 0, err)
        rc, _, err = self.cli("snapshot", "alpha", user=nobody)
        self.assertEqual(rc, 1)
        self.assertIn("only root, the daemon's user or its group", err)
        self.assertIn("uid 65534", err)

    def as_peer(self, method, path, uid, gid, groups=()):
        """One request over the control socket from a child running with
        these numeric credentials (setpriv: no user or group has to
        exist). Returns (status, JSON body), or (None, errno name) when
        the socket cannot even be opened."""
        prog = textwrap.dedent("""
            import errno, json, socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            try:
                s.connect(sys.argv[1])
            except OSError as e:
                print(json.dumps([None, errno.errorcode[e.errno]]))
                sys.exit(0)
            s.sendall(("%s %s HTTP/1.1\\r\\nHost: x\\r\\n"
                       "Content-Length: 0\\r\\nConnection: close\\r\\n"
                       "\\r\\n" % (sys.argv[2], sys.argv[3])).encode())
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
            head, _, body = data.partition(b"\\r\\n\\r\\n")
            print(json.dumps([int(head.split()[1]),
                              json.loads(body) if body else None]))
            """)
        cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
        cmd += (["--groups=" + ",".join(str(g) for g in groups)] if groups
                else ["--clear-groups"])
        p = subprocess.run(cmd + ["/usr/bin/python3", "-c", prog, self.sock,
                                  method, path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return tuple(json.loads(p.stdout))

    def test_control_socket_group(self):
        """control_socket_group: the socket is that group's, mode 0660,
        and its members (primary or supplementary group) may make
        changes; others may read when they can open the socket at all,
        and get a 403 with a JSON error for a change. Numeric ids only:
        nothing is added to the system's user or group database."""
        if shutil.which("setpriv") is None:
            self.skipTest("setpriv (util-linux) is not installed")
        if os.geteuid() != 0:
            self.skipTest("needs root (chown of the socket, setpriv)")
        nobody, group, other = 65534, 4242, 4243
        d = self.start(extra="control_socket_group: %d\n" % group)
        d.write("a.yaml", self.alpha())
        d.wait_status("alpha", phase="available")
        st = os.stat(self.sock)
        self.assertEqual((st.st_gid, st.st_mode & 0o777), (group, 0o660))
        os.chmod(self.tmp, 0o755)   # the way to the socket
        # Not in the group: the socket's mode keeps it out.
        self.assertEqual(self.as_peer("GET", "/v1/health", nobody, nobody),
                         (None, "EACCES"))
        # In the group, as a supplementary group or as the primary one:
        # reading and changing.
        for gid, groups in ((nobody, (100, group)), (group, ())):
            code, h = self.as_peer("GET", "/v1/health", nobody, gid, groups)
            self.assertEqual((code, h["status"]), (200, "ok"))
            code, r = self.as_peer("POST", "/v1/clusters/alpha/reconcile",
                                   nobody, gid, groups)
            self.assertEqual((code, r["result"]),
                             (202, "reconcile requested"), (gid, groups))
        e = dict(os.environ, CACHEKEEPER_SOCKET=self.sock, NO_COLOR="1")
        p = subprocess.run(["setpriv", "--reuid=%d" % nobody,
                            "--regid=%d" % nobody, "--groups=%d" % group,
                            CLI, "reconcile", "alpha"], capture_output=True,
                           text=True, env=e, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        # Opened up to everyone: anyone reads, outsiders change nothing,
        # the daemon's own primary group (0) included, now that the
        # configured group replaces it.
        os.chmod(self.sock, 0o666)
        for gid, groups in ((nobody, ()), (0, ()), (nobody, (other,))):
            code, h = self.as_peer("GET", "/v1/health", nobody, gid, groups)
            self.assertEqual((code, h["status"]), (200, "ok"))
            code, c = self.as_peer("GET", "/v1/clusters/alpha", nobody, gid,
                                   groups)
            self.assertEqual((code, c["phase"]), (200, "available"))
            code, r = self.as_peer("POST", "/v1/clusters/alpha/reconcile",
                                   nobody, gid, groups)
            self.assertEqual(code, 403, (gid, groups))
            self.assertEqual(r["error"]["status"], 403)
            self.assertIn("only root, the daemon's user or group %d may "
                          "reconcile clusters (you are uid %d gid %d"
                          % (group, nobody, gid), r["error"]["message"])
            code, r = self.as_peer("DELETE", "/v1/snapshots/x", nobody, gid,
                                   groups)
            self.assertEqual((code, r["error"]["status"]), (403, 403))
        d.wait_log("reconcile of alpha refused to uid 65534")
        # A reload with another group makes the socket again, chowned.
        with open(d.conf) as f:
            text = f.read()
        with open(d.conf, "w") as f:
            f.write(text.replace("control_socket_group: %d" % group,
                                 "control_socket_group: %d" % other))
        d.send(signal.SIGHUP)
        d.wait_log("reload done")
        wait_for(lambda: os.stat(self.sock).st_gid == other,
                 what="socket chowned to the new group")
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o660)
        code, r = self.as_peer("POST", "/v1/clusters/alpha/reconcile",
                               nobody, nobody, (other,))
        self.assertEqual(code, 202)
        # An unknown group is an error with its place, and -n says so.
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("state_dir: %s\ncontrol_socket_group: no-such-ck\n"
                    % d.state)
        p = subprocess.run([DAEMON, "-n", "-f", bad], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("%s:2:23: control_socket_group: no group named "
                      "'no-such-ck'" % bad, p.stdout + p.stderr)

    def test_watch_shows_progress(self):
        d = self.start()
        d.write("a.yaml", self.alpha(labels={"test-op-ms": "2500"}))
        d.wait_status("alpha", phase="available", timeout=10)
        p = subprocess.Popen([CLI, "status", "--watch", "--interval", "0.2"],
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ,
                                      CACHEKEEPER_SOCKET=self.sock))
        try:
            d.write("a.yaml", self.alpha("cluster_size: 4\n",
                                         labels={"test-op-ms": "2500"}))
            seen = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = p.stdout.readline()
                m = re.search(r"add-replicas (\d+)/2500 ms", line)
                if m:
                    seen.append(int(m.group(1)))
                if seen and re.search(r"^alpha .* available ", line):
                    break
            self.assertGreaterEqual(len(seen), 3, seen)
            self.assertEqual(seen, sorted(seen))
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
            p.stdout.close()
        self.assertEqual(p.returncode, 0)

    def test_metrics_after_create_and_failover(self):
        if not os.access(REDIS, os.X_OK):
            self.skipTest("redis-server is not installed")
        base = cklib.free_port_block()
        d = self.start(binary=DAEMON, extra="local:\n  port_range: %d-%d\n"
                       "  failover_after: 500ms\n" % (base, base + 99))
        d.write("web.yaml", spec("web", backend="local", extra=
                                 "cluster_size: 2\nport: %d\n" %
                                 (base + 100)))
        st = wait_for(lambda: d.status("web")["phase"] == "available" and
                      all(n["synced"] for n in d.status("web")[
                          "endpoints"]["nodes"]) and d.status("web"), 30,
                      what="web available")

        def scrape():
            c = http.client.HTTPConnection("127.0.0.1", self.mport,
                                           timeout=10)
            c.request("GET", "/metrics")
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertIn("text/plain", r.getheader("Content-Type"))
            text = r.read().decode()
            c.close()
            return metric_lines(text)
        m = scrape()
        self.assertEqual(m[("cachekeeper_cluster_phase",
                            (("cluster", "web"), ("phase", "available")))],
                         1)
        self.assertEqual(m[("cachekeeper_clusters",
                            (("phase", "available"),))], 1)
        self.assertEqual(m[("cachekeeper_backend_calls_total",
                            (("backend", "local"), ("operation", "create"),
                             ("result", "ok")))], 1)
        for n in st["endpoints"]["nodes"]:
            self.assertEqual(m[("cachekeeper_node_up", (
                ("cluster", "web"), ("node", n["id"])))], 1)
        self.assertGreater(m[("process_resident_memory_bytes", ())], 0)
        self.assertGreater(m[("cachekeeper_reconcile_duration_seconds_count",
                              ())], 0)
        primary = [n for n in st["endpoints"]["nodes"]
                   if n["role"] == "primary"][0]
        os.kill(primary["pid"], signal.SIGKILL)
        wait_for(lambda: d.status("web")["endpoints"]["failovers"] == 1, 20,
                 what="failover")
        m = wait_for(lambda: (lambda x: x if x.get((
            "cachekeeper_failovers_total", (("cluster", "web"),))) == 1
            else None)(scrape()), 10, what="failover in metrics")
        # The same numbers on the control socket.
        c = UnixHTTP(self.sock)
        c.request("GET", "/v1/metrics")
        text = c.getresponse().read().decode()
        c.close()
        self.assertEqual(metric_lines(text)[("cachekeeper_failovers_total",
                                             (("cluster", "web"),))], 1)


if __name__ == "__main__":
    cklib.main()
