"""Helpers for cachekeeper's integration tests.

Each test gets a private temporary directory with a generated daemon
configuration, starts the real daemon binary (cachekeeperd, or
cachekeeperd-test which is the same code plus the in-memory "test" backend),
listens on its NOTIFY_SOCKET like systemd would, and polls files and logs
with deadlines (Redis's wait_for_condition). Every process a test starts is
stopped by its pid when the test ends, also on failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import textwrap
import time
import unittest

BUILDDIR = os.environ.get("CK_BUILDDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SRCDIR = os.environ.get("CK_SRCDIR") or BUILDDIR
DAEMON = os.path.join(BUILDDIR, "cachekeeperd")
TEST_DAEMON = os.path.join(BUILDDIR, "tests", "cachekeeperd-test")
CLI = os.path.join(BUILDDIR, "cachekeeper")
# The daemon reads only files no one else can write (StrictModes): make
# the files the tests write so, whatever the caller's umask.
os.umask(0o022)
# Sanitizer and valgrind runs are slower: scale every deadline.
SLOW = float(os.environ.get("CK_TEST_SLOW", "1"))


def wait_for(cond, timeout=10.0, interval=0.02, what="condition"):
    """Poll cond() until it returns a true value; fail after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (OSError, ValueError, KeyError, TypeError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" %
                         (timeout * SLOW, what))


def spec(name, backend="test", extra="", labels=None):
    """A valid spec document; extra is YAML added under spec:."""
    lab = ""
    if labels:
        lab = "  labels:\n" + "".join(
            "    %s: \"%s\"\n" % (k, v) for k, v in labels.items())
    body = textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ")
    return ("apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
            "metadata:\n  name: %s\n%sspec:\n  backend: %s\n%s\n"
            % (name, lab, backend, body if body.strip() else ""))


class NotifyListener:
    """A datagram socket standing in for systemd's notify socket. A
    thread drains it continuously, as systemd would (read=False: never,
    as a stuck supervisor would)."""

    def __init__(self, path, read=True):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []
        self.lock = threading.Lock()
        self.running = read
        self.thread = None
        if read:
            self.thread = threading.Thread(target=self._drain, daemon=True)
            self.thread.start()

    def _drain(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                for line in data.decode().split("\n"):
                    if line:
                        self.messages.append(line)

    def poll(self):
        with self.lock:
            return list(self.messages)

    def seen(self, prefix):
        return [m for m in self.poll() if m.startswith(prefix)]

    def close(self):
        self.running = False
        if self.thread:
            self.thread.join()
        self.sock.close()


class Daemon:
    """One daemon process with its own directory tree."""

    def __init__(self, tmp, binary=TEST_DAEMON, config=None, notify=True,
                 env=None, args=("-d",), notify_read=True):
        self.tmp = tmp
        self.binary = binary
        self.specs = os.path.join(tmp, "specs")
        self.state = os.path.join(tmp, "state")
        self.conf = os.path.join(tmp, "cachekeeperd.yaml")
        self.log_path = os.path.join(tmp, "daemon.log")
        os.makedirs(self.specs, exist_ok=True)
        if config is None:
            config = ("clusters_dir: %s\nstate_dir: %s\n"
                      "resync_interval: 60s\n" % (self.specs, self.state))
        with open(self.conf, "w") as f:
            f.write(config)
        self.notify = NotifyListener(os.path.join(tmp, "notify.sock"),
                                     notify_read) if notify else None
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("WATCHDOG_USEC", None)
        self.env.pop("JOURNAL_STREAM", None)
        # Tests talk to 127.0.0.1 only: never to the real instance
        # metadata service, STS or AWS. A test that wants credentials
        # points them at the emulator.
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN",
                  "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL_STS",
                  "AWS_EC2_METADATA_SERVICE_ENDPOINT"):
            self.env.pop(k, None)
        self.env["AWS_EC2_METADATA_DISABLED"] = "true"
        self.env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
        self.env["AWS_CONFIG_FILE"] = "/nonexistent"
        if self.notify:
            self.env["NOTIFY_SOCKET"] = self.notify.path
        if env:
            self.env.update(env)
        self.args = list(args)
        self.proc = None
        self.logf = None

    def start(self, wait_ready=True):
        ready_before = self.log().count("info: ready")
        # Never the machine's /run/cachekeeper/control.sock: each daemon
        # of a test has its own socket in its directory.
        with open(self.conf) as f:
            text = f.read()
        if not any(l.startswith("control_socket:")
                   for l in text.splitlines()):
            with open(self.conf, "a") as f:
                f.write("%scontrol_socket: %s\n" % (
                    "" if text.endswith("\n") or not text else "\n",
                    os.path.join(self.tmp, "control.sock")))
        self.logf = open(self.log_path, "ab")
        cmd = [self.binary, "-f", self.conf] + self.args
        if os.environ.get("CK_VALGRIND"):
            cmd = ["valgrind", "-q", "--error-exitcode=99",
                   "--leak-check=full"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=self.env)
        if wait_ready:
            self.wait_log("info: ready", timeout=10, count=ready_before + 1)
        return self

    def pid(self):
        return self.proc.pid

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stop by pid; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        return rc

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
            self.stop(signal.SIGKILL)
        if self.notify:
            self.notify.close()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        """Fail at once, with the exit code, if the daemon died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("daemon exited with code %d" %
                                 self.proc.returncode)

    def wait_log(self, text, timeout=5, count=1):
        def ok():
            if self.log().count(text) >= count:
                return True
            self.alive()
            return False
        return wait_for(ok, timeout, what="log line %r x%d" % (text, count))

    def status_path(self, name):
        return os.path.join(self.state, "status", name + ".json")

    def status(self, name):
        try:
            with open(self.status_path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def wait_status(self, name, timeout=5, **want):
        """Wait until the status file has every key=value in want."""
        def ok():
            self.alive()
            st = self.status(name)
            if st is None:
                return None
            for k, v in want.items():
                if st.get(k) != v:
                    return None
            return st
        return wait_for(ok, timeout, what="status of %s with %r" %
                        (name, want))

    def write(self, rel, text, atomic=True):
        """Write a spec file: atomically (temp + rename) or in place."""
        path = os.path.join(self.specs, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if atomic:
            tmp = os.path.join(os.path.dirname(path),
                               "." + os.path.basename(path) + ".tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)
        else:
            with open(path, "w") as f:
                f.write(text)
        return path


def free_port_block(size=120):
    """A block of consecutive free loopback ports, chosen at random."""
    import random
    for _ in range(200):
        base = random.randrange(20000, 60000 - size, 10)
        ok = True
        for p in range(base, base + size):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    raise RuntimeError("no free port block")


def node_pids(state_dir):
    """Pids of the redis-server nodes under a state dir's local backend."""
    pids = []
    base = os.path.join(state_dir, "local")
    if not os.path.isdir(base):
        return pids
    for cluster in os.listdir(base):
        cdir = os.path.join(base, cluster)
        if not os.path.isdir(cdir):
            continue
        for node in os.listdir(cdir):
            pf = os.path.join(cdir, node, "redis.pid")
            try:
                with open(pf) as f:
                    pids.append(int(f.read().strip()))
            except (OSError, ValueError):
                pass
    return pids


def is_redis(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"redis" in f.read()
    except OSError:
        return False


def kill_nodes(state_dir, extra=()):
    """Stop, by pid, every node a test's daemon started."""
    for pid in set(node_pids(state_dir)) | set(extra):
        if is_redis(pid):
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class DaemonTest(unittest.TestCase):
    """Base class: a temp dir per test and daemons stopped at the end."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ck-it-")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.close()
        for d in self.daemons:
            kill_nodes(d.state, getattr(d, "extra_pids", ()))
        res = self._outcome.result
        failed = any(t is self for t, _ in res.errors + res.failures)
        if failed or not self._outcome.success or \
                os.environ.get("CK_TEST_VERBOSE"):
            for d in self.daemons:
                sys.stderr.write("---- daemon log (%s) ----\n%s\n" %
                                 (d.log_path, d.log()[-6000:]))
                sdir = os.path.join(d.state, "status")
                for n in sorted(os.listdir(sdir)) if os.path.isdir(sdir) \
                        else []:
                    with open(os.path.join(sdir, n)) as f:
                        sys.stderr.write("---- %s ----\n%s\n" %
                                         (n, f.read()))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def daemon(self, **kw):
        d = Daemon(self.tmp, **kw)
        self.daemons.append(d)
        return d


def main():
    """Run the tests; print the plain 'N passed, N failed' closing line."""
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    failed = len(res.failures) + len(res.errors)
    skipped = len(res.skipped)
    passed = res.testsRun - failed - skipped
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    for t, why in res.skipped:
        print("skipped %s: %s" % (t.id(), why))
    sys.exit(1 if failed else (77 if passed == 0 and skipped else 0))
