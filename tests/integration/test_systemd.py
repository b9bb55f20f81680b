"""Local nodes as systemd units, under a real systemd.

PID 1 of the build machine is not systemd, so the test boots one: the
real /lib/systemd/systemd as PID 1 of a private PID and mount namespace
(unshare(1)), with a unit search path (SYSTEMD_UNIT_PATH) holding only
the shipped cachekeeperd.service and cachekeeper-redis@.service, Debian's
dbus.socket, dbus.service and polkit.service, and empty stand-ins for
the boot targets. The one drop-in runs the daemon from the build tree
with the test's configuration; daemon and nodes run as the cachekeeper
user of the shipped sysusers.d file, and the daemon manages the nodes'
units over the system bus, allowed by the shipped polkit rule and
nothing else. /run, /tmp, /var/tmp and /var/lib are private tmpfs mounts
in the namespace, /etc/passwd and /etc/group are copies with the
cachekeeper user added, the polkit rules directories hold only the
shipped rule, /var/lib/cachekeeper is the test's directory: nothing of
the machine's is touched, and killing PID 1 at the end (by pid) takes
every process of the namespace with it.

Then, through systemctl in the namespace, as an operator would (the
daemon and the nodes as the cachekeeper user, the daemon talking to
systemd over the system bus, polkitd deciding with the shipped rule):
- the daemon, started as cachekeeperd.service, finds it runs under
  systemd (local.node_manager: auto) and starts each node as
  cachekeeper-redis@web-nN.service: the node's process is in that unit's
  control group, not the daemon's;
- `systemctl restart cachekeeperd` and `systemctl stop cachekeeperd`
  leave every node running with the same pid, and data written before is
  still there;
- a node killed with SIGKILL is not brought back by systemd itself
  (Restart=no: the daemon supervises) but by the daemon, again as its
  unit;
- deleting the cluster (deletion_policy: delete) stops the units and
  leaves none behind, failed or not.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cklib  # noqa: E402
from cklib import BUILDDIR, SRCDIR, DAEMON, spec, wait_for  # noqa: E402
from resp import Client  # noqa: E402

SYSTEMD = "/lib/systemd/systemd"
REDIS = "/usr/bin/redis-server"
UNITS = os.path.join(SRCDIR, "packaging", "systemd")

EMPTY_TARGETS = ("cktest.target", "sysinit.target", "basic.target",
                 "shutdown.target", "network.target", "sockets.target",
                 "network-online.target", "multi-user.target")
DEBIAN_UNITS = ("dbus.socket", "dbus.service", "polkit.service")
POLKITD = "/usr/lib/polkit-1/polkitd"
DBUS = "/usr/bin/dbus-daemon"

INNER = r"""
set -e
mount --make-rprivate /
for d in /run /tmp /var/tmp /var/lib; do mount -t tmpfs -o mode=0755 tmpfs $d; done
mkdir -p /run/systemd/system /var/lib/cachekeeper
mount --bind "$CK_STATE" /var/lib/cachekeeper
mount --bind "$CK_TMP/passwd" /etc/passwd
mount --bind "$CK_TMP/group" /etc/group
for d in /etc/polkit-1/rules.d /usr/share/polkit-1/rules.d; do
    if [ -d $d ]; then mount -t tmpfs -o mode=0755 tmpfs $d; fi
done
cp "$CK_RULE" /usr/share/polkit-1/rules.d/50-cachekeeper.rules
exec env -i container=cachekeeper-test SYSTEMD_UNIT_PATH="$CK_UNITS" \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=cktest.target \
    --log-target=console --log-level=info
"""


def why_not():
    if os.geteuid() != 0:
        return "needs root to boot systemd in a namespace"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return "%s(1) is not installed" % tool
    if not os.access(SYSTEMD, os.X_OK):
        return "systemd is not installed"
    if not os.access(REDIS, os.X_OK):
        return "redis-server is not installed"
    for path, pkg in ((DBUS, "dbus-daemon"), (POLKITD, "polkitd")):
        if not os.access(path, os.X_OK):
            return "%s is not installed (scripts/install-deps)" % pkg
    for u in DEBIAN_UNITS:
        if not os.path.exists(os.path.join("/lib/systemd/system", u)):
            return "no /lib/systemd/system/%s" % u
    return None


class SystemdTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        reason = why_not()
        if reason:
            raise unittest.SkipTest(reason)
        # Below the build tree, not /tmp: the namespace has its own /tmp.
        cls.tmp = tempfile.mkdtemp(prefix="ck-sd-", dir=BUILDDIR)
        os.chmod(cls.tmp, 0o755)
        cls.state = os.path.join(cls.tmp, "state")
        cls.units = os.path.join(cls.tmp, "units")
        cls.specs = os.path.join(cls.tmp, "specs")
        for d in (cls.state, cls.units, cls.specs):
            os.makedirs(d)
        os.chmod(cls.state, 0o750)
        cls.log_path = os.path.join(cls.tmp, "daemon.log")
        cls.base = cklib.free_port_block()
        cls.port = cls.base + 100
        cls.write_units()
        cls.write_users()
        with open(os.path.join(cls.tmp, "cachekeeperd.yaml"), "w") as f:
            f.write("clusters_dir: %s\nstate_dir: /var/lib/cachekeeper\n"
                    "control_socket: /run/cachekeeper/control.sock\n"
                    "resync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\n  node_manager: auto\n"
                    % (cls.specs, cls.base, cls.base + 99))
        # systemd makes its control groups below the one it starts in,
        # in the machine's hierarchies: remember them to remove the new
        # (empty, once PID 1 is gone) ones at the end.
        cls.cgroups_before = cls.cgroup_dirs()
        cls.console = open(os.path.join(cls.tmp, "systemd.log"), "wb")
        env = dict(os.environ, CK_STATE=cls.state, CK_UNITS=cls.units,
                   CK_TMP=cls.tmp, CK_RULE=os.path.join(
                       SRCDIR, "packaging", "polkit", "cachekeeper.rules"))
        cls.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc",
             "/bin/bash", "-c", INNER], env=env, stdout=cls.console,
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            cls.pid1 = wait_for(cls.find_pid1, 10, what="systemd started")
            wait_for(lambda: cls.ctl("is-system-running").stdout.strip()
                     in ("running", "degraded"), 30,
                     what="systemd up in the namespace")
            # The system bus and polkit, as on a booted machine.
            r = cls.ctl("start", "dbus.socket", "dbus.service",
                        "polkit.service")
            if r.returncode != 0:
                raise AssertionError("dbus/polkit did not start: %s" %
                                     r.stderr)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def write_units(cls):
        # The daemon's unit as make generated it (the build tree's
        # sbindir), else the template with the build tree's daemon.
        built = os.path.join(BUILDDIR, "packaging", "systemd",
                             "cachekeeperd.service")
        if os.path.exists(built):
            shutil.copy(built, cls.units)
        else:
            with open(os.path.join(UNITS, "cachekeeperd.service.in")) as f:
                text = f.read().replace("@sbindir@", BUILDDIR)
            with open(os.path.join(cls.units, "cachekeeperd.service"),
                      "w") as f:
                f.write(text)
        shutil.copy(os.path.join(UNITS, "cachekeeper-redis@.service"),
                    cls.units)
        for t in EMPTY_TARGETS:
            with open(os.path.join(cls.units, t), "w") as f:
                f.write("[Unit]\nDescription=%s (empty, for the test)\n" % t)
        for u in DEBIAN_UNITS:
            shutil.copy(os.path.join("/lib/systemd/system", u), cls.units)
        d = os.path.join(cls.units, "cachekeeperd.service.d")
        os.makedirs(d)
        with open(os.path.join(d, "test.conf"), "w") as f:
            f.write("[Service]\nExecStart=\nExecStart=%s --config %s\n"
                    "ConfigurationDirectory=\n"
                    "StandardOutput=append:%s\nStandardError=inherit\n"
                    % (DAEMON, os.path.join(cls.tmp, "cachekeeperd.yaml"),
                       cls.log_path))
            # A sanitizer build (scripts/check's second run): its options
            # reach the unit, and LeakSanitizer's exit check, which
            # ptraces the daemon's threads, gets ptrace (the shipped
            # filter refuses it; nothing else changes).
            sanitizer = {k: os.environ[k] for k in
                         ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")
                         if k in os.environ}
            if sanitizer:
                for k, v in sorted(sanitizer.items()):
                    f.write("Environment=%s=%s\n" % (k, v))
                f.write("SystemCallFilter=ptrace\n")

    @classmethod
    def write_users(cls):
        """/etc/passwd and /etc/group with the user of the shipped
        sysusers.d file, at a free id (bind-mounted in the namespace)."""
        with open(os.path.join(UNITS, "cachekeeper.sysusers")) as f:
            entry = [l.split() for l in f
                     if l.strip() and not l.startswith("#")][0]
        name = entry[1]
        with open("/etc/passwd") as f:
            passwd = f.read()
        with open("/etc/group") as f:
            group = f.read()
        used = {int(l.split(":")[2]) for l in passwd.splitlines() if l} | \
            {int(l.split(":")[2]) for l in group.splitlines() if l}
        uid = next(i for i in range(990, 100, -1) if i not in used)
        cls.uid = uid
        if not any(l.startswith(name + ":") for l in passwd.splitlines()):
            passwd += "%s:x:%d:%d:cachekeeper:/var/lib/cachekeeper:" \
                "/usr/sbin/nologin\n" % (name, uid, uid)
        if not any(l.startswith(name + ":") for l in group.splitlines()):
            group += "%s:x:%d:\n" % (name, uid)
        for n, text in (("passwd", passwd), ("group", group)):
            with open(os.path.join(cls.tmp, n), "w") as f:
                f.write(text)
            os.chmod(os.path.join(cls.tmp, n), 0o644)

    @staticmethod
    def cgroup_dirs():
        """Every control group of the machine's hierarchies (systemd in
        the namespace has no cgroup namespace: it starts from their
        roots)."""
        dirs = set()
        for h in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", h)
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            for dp, dn, _ in os.walk(top):
                dirs.update(os.path.join(dp, n) for n in dn)
        return dirs

    @classmethod
    def find_pid1(cls):
        # unshare --fork: its one child is PID 1 of the namespace.
        with open("/proc/%d/task/%d/children" % (cls.unshare.pid,
                                                 cls.unshare.pid)) as f:
            kids = f.read().split()
        if not kids:
            return None
        pid = int(kids[0])
        with open("/proc/%d/comm" % pid) as f:
            return pid if f.read().strip() == "systemd" else None

    @classmethod
    def ctl(cls, *args, check=False):
        return subprocess.run(
            ["nsenter", "-t", str(cls.pid1), "-m", "-p", "systemctl",
             "--no-pager"] + list(args), capture_output=True, text=True,
            timeout=60, check=check)

    @classmethod
    def tearDownClass(cls):
        pid1 = getattr(cls, "pid1", None)
        if pid1:
            # SIGKILL to PID 1 of a namespace ends every process in it.
            try:
                os.kill(pid1, signal.SIGKILL)
            except OSError:
                pass
        if getattr(cls, "unshare", None):
            try:
                cls.unshare.wait(10)
            except subprocess.TimeoutExpired:
                cls.unshare.kill()
                cls.unshare.wait()
        cklib.kill_nodes(cls.state)
        before = getattr(cls, "cgroups_before", None)
        if before is not None:
            # Empty once the kernel has reaped the namespace's processes.
            deadline = time.monotonic() + 5
            left = cls.cgroup_dirs() - before
            while left and time.monotonic() < deadline:
                for d in sorted(left, key=len, reverse=True):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
                left = cls.cgroup_dirs() - before
                time.sleep(0.05)
        cls.console.close() if getattr(cls, "console", None) else None
        if os.environ.get("CK_TEST_VERBOSE") or getattr(cls, "failed",
                                                        False):
            for p in (cls.log_path, os.path.join(cls.tmp, "systemd.log")):
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        sys.stderr.write("---- %s ----\n%s\n" %
                                         (p, f.read()[-6000:]))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        res = self._outcome.result
        if any(t is self for t, _ in res.errors + res.failures):
            type(self).failed = True

    # --- helpers -------------------------------------------------------------

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def status(self, name):
        import json
        try:
            with open(os.path.join(self.state, "status",
                                   name + ".json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def wait_available(self, name, nodes, timeout=40):
        def ok():
            st = self.status(name)
            if not st or st["phase"] != "available" or \
                    st["observed_generation"] != st["generation"]:
                return None
            ns = st["endpoints"].get("nodes", [])
            return st if len(ns) == nodes else None
        return wait_for(ok, timeout, what="%s available, %d nodes" %
                        (name, nodes))

    def write_spec(self, text):
        tmp = os.path.join(self.specs, ".web.yaml.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.specs, "web.yaml"))

    def host_pid(self, nspid):
        """The pid, as this process sees it, of the namespace's nspid
        (the daemon and status files speak the namespace's pids)."""
        ns = os.readlink("/proc/%d/ns/pid" % self.pid1)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.readlink("/proc/%s/ns/pid" % d) != ns:
                    continue
                with open("/proc/%s/status" % d) as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            ids = line.split()[1:]
                            if len(ids) > 1 and int(ids[-1]) == nspid:
                                return int(d)
            except (OSError, ValueError):
                continue
        return None

    def is_redis(self, nspid):
        pid = self.host_pid(nspid)
        return pid is not None and cklib.is_redis(pid)

    def unit_of(self, nspid):
        """The systemd unit whose control group holds nspid."""
        with open("/proc/%d/cgroup" % self.host_pid(nspid)) as f:
            for line in f:
                parts = line.strip().split(":", 2)
                if parts[1] in ("name=systemd", "") and \
                        parts[2].endswith(".service"):
                    return parts[2].rsplit("/", 1)[1]
        return None

    def uid_of(self, nspid):
        with open("/proc/%d/status" % self.host_pid(nspid)) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        return None

    def active(self, unit):
        return self.ctl("is-active", unit).stdout.strip()

    def daemon_pid(self):
        out = self.ctl("show", "-p", "MainPID", "--value",
                       "cachekeeperd.service").stdout.strip()
        return int(out or 0)

    # --- the scenario ----------------------------------------------------------

    def test_nodes_are_units_and_outlive_the_daemon(self):
        self.write_spec(spec("web", backend="local",
                             extra="cluster_size: 2\nport: %d\n"
                             "deletion_policy: delete\n"
                             "final_snapshot: false\n" % self.port))
        r = self.ctl("start", "cachekeeperd.service")
        self.assertEqual(r.returncode, 0, r.stderr + self.log())
        self.assertEqual(self.active("cachekeeperd.service"), "active")
        wait_for(lambda: "local nodes: nodes run as cachekeeper-redis@ "
                 "units" in self.log(), 10, what="units chosen")
        st = self.wait_available("web", 2)
        nodes = {n["id"]: n for n in st["endpoints"]["nodes"]}
        units = {}
        dpid = self.daemon_pid()
        for nid, n in nodes.items():
            want = "cachekeeper-redis@web-%s.service" % nid
            self.assertEqual(self.unit_of(n["pid"]), want)
            self.assertEqual(self.active(want), "active")
            pid = int(self.ctl("show", "-p", "MainPID", "--value",
                               want).stdout.strip())
            self.assertEqual(pid, n["pid"])
            units[nid] = want
        self.assertEqual(self.unit_of(dpid), "cachekeeperd.service")
        # Nobody runs as root: the daemon and its nodes are cachekeeper.
        for nspid in [dpid] + [n["pid"] for n in nodes.values()]:
            self.assertEqual(self.uid_of(nspid), self.uid)
        with Client(port=self.port) as c:
            for i in range(100):
                c.call("SET", "k%d" % i, "v%d" % i)
        pids = sorted(n["pid"] for n in nodes.values())

        # Restart and stop the daemon's unit: no node notices.
        r = self.ctl("restart", "cachekeeperd.service")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: self.daemon_pid() not in (0, dpid), 10,
                 what="a new daemon")
        st = self.wait_available("web", 2)
        self.assertEqual(sorted(n["pid"] for n in st["endpoints"]["nodes"]),
                         pids)
        r = self.ctl("stop", "cachekeeperd.service")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.active("cachekeeperd.service"), "inactive")
        for nid, unit in units.items():
            self.assertEqual(self.active(unit), "active")
            with Client(port=int(nodes[nid]["address"].split(":")[1])) as c:
                self.assertEqual(c.call("PING"), "PONG")
        for pid in pids:
            self.assertTrue(self.is_redis(pid))

        # Killed while the daemon is away: systemd leaves it dead
        # (Restart=no); the daemon brings it back, as its unit.
        replica = [n for n in nodes.values() if n["role"] == "replica"][0]
        os.kill(self.host_pid(replica["pid"]), signal.SIGKILL)
        unit = units[replica["id"]]
        wait_for(lambda: self.active(unit) == "failed", 10,
                 what="%s failed" % unit)
        time.sleep(2)
        self.assertEqual(self.active(unit), "failed")
        r = self.ctl("start", "cachekeeperd.service")
        self.assertEqual(r.returncode, 0, r.stderr)

        def back():
            st = self.status("web")
            for n in (st or {}).get("endpoints", {}).get("nodes", []):
                if n["id"] == replica["id"] and n["pid"] != replica["pid"] \
                        and n["pid"] and self.is_redis(n["pid"]):
                    return n
            return None
        n = wait_for(back, 30, what="the replica started again")
        self.assertEqual(self.unit_of(n["pid"]), unit)
        self.assertEqual(self.active(unit), "active")
        st = self.wait_available("web", 2)
        port = int(n["address"].split(":")[1])
        with Client(port=port) as c:
            wait_for(lambda: c.call("GET", "k99") == "v99", 20,
                     what="the replica resynced")

        # Deleted: the units go, none is left failed.
        os.unlink(os.path.join(self.specs, "web.yaml"))
        wait_for(lambda: all(self.active(u) in ("inactive", "unknown")
                             for u in units.values()), 30,
                 what="the node units stopped")
        out = self.ctl("list-units", "--all", "--plain", "--no-legend",
                       "cachekeeper-redis@*").stdout
        self.assertEqual(out.strip(), "", out)
        wait_for(lambda: not any(self.is_redis(p) for p in
                                 [n["pid"] for n in
                                  st["endpoints"]["nodes"]]), 10,
                 what="node processes gone")


if __name__ == "__main__":
    cklib.main()
