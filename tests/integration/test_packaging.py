#!/usr/bin/python3
"""Packaging: the systemd units verify cleanly and are sandboxed to an
exposure of 2.0 or better, the sysusers.d and tmpfiles.d snippets create
what the units expect, the example configuration passes cachekeeperd -n,
the man pages render without a warning, the bash completion completes,
and the Grafana dashboard only asks for metrics the daemon exports.

That the units start, that the sandbox lets the daemon and Redis work,
and that stopping the daemon's unit leaves the nodes running is
test_systemd.py, under a systemd booted for it; docs/packaging.md lists
what neither checks.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import cklib

SRC = cklib.SRCDIR
BUILD = cklib.BUILDDIR
PKG = os.path.join(SRC, "packaging")
SYSTEMD = os.path.join(PKG, "systemd")
MAN = os.path.join(SRC, "docs", "man")
MAN_PAGES = ("cachekeeper.1", "cachekeeperd.8", "cachekeeperd.yaml.5",
             "cachekeeper-spec.5")
COMPLETION = os.path.join(PKG, "completion", "cachekeeper.bash")
DASHBOARD = os.path.join(PKG, "grafana", "cachekeeper-dashboard.json")
EXAMPLE = os.path.join(PKG, "cachekeeperd.yaml.example")
COMMANDS = ("validate", "plan", "status", "reconcile", "snapshot",
            "snapshots", "snapshot-delete", "failover", "confirm-deletions")
METRICS = {
    "cachekeeper_clusters", "cachekeeper_cluster_phase",
    "cachekeeper_cluster_generation_lag",
    "cachekeeper_reconcile_duration_seconds",
    "cachekeeper_backend_calls_total", "cachekeeper_backend_retries_total",
    "cachekeeper_backend_throttles_total", "cachekeeper_failovers_total",
    "cachekeeper_node_up", "cachekeeper_replication_lag_bytes",
    "cachekeeper_last_backup_timestamp_seconds", "cachekeeper_spec_errors",
    "process_resident_memory_bytes", "process_open_fds",
}
TEMPLATE = "cachekeeper-redis@.service"
# A cluster name with a "-", so the instance needs systemd-escape's \x2d.
INSTANCE = "cachekeeper-redis@web\\x2dcache-n1.service"
MAX_EXPOSURE = 2.0


def run(argv, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("universal_newlines", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(argv, **kw)


def read(path):
    with open(path) as f:
        return f.read()


class PackagingTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ck-pkg-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- systemd units -------------------------------------------------

    def unit_dir(self):
        """The units as installed: @sbindir@ is the build tree (where
        cachekeeperd exists), and a missing redis-server is replaced so
        that verify checks everything else."""
        daemon = os.path.join(BUILD, "cachekeeperd")
        if not os.access(daemon, os.X_OK):
            self.skipTest("%s is not built" % daemon)
        d = os.path.join(self.tmp, "units")
        os.mkdir(d)
        unit = read(os.path.join(SYSTEMD, "cachekeeperd.service.in"))
        unit = unit.replace("@sbindir@", BUILD)
        self.assertNotRegex(unit, r"@[a-z_]+@",
                            "unsubstituted @VAR@ in cachekeeperd.service")
        with open(os.path.join(d, "cachekeeperd.service"), "w") as f:
            f.write(unit)
        tmpl = read(os.path.join(SYSTEMD, TEMPLATE))
        if not os.access("/usr/bin/redis-server", os.X_OK):
            tmpl = tmpl.replace("/usr/bin/redis-server", "/bin/true")
        with open(os.path.join(d, TEMPLATE), "w") as f:
            f.write(tmpl)
        return d

    def man_env(self):
        """MANPATH with the shipped pages, for verify's Documentation=
        check (it runs man for every man: link)."""
        root = os.path.join(self.tmp, "man")
        for page in MAN_PAGES:
            sect = page.rsplit(".", 1)[1]
            os.makedirs(os.path.join(root, "man" + sect), exist_ok=True)
            shutil.copy(os.path.join(MAN, page),
                        os.path.join(root, "man" + sect))
        env = dict(os.environ, MANPATH=root + ":")
        env.pop("SYSTEMD_LOG_LEVEL", None)
        return env

    def need(self, tool):
        path = shutil.which(tool)
        if path is None:
            self.skipTest("%s is not installed" % tool)
        return path

    def verify_works(self, env):
        """systemd-analyze verify needs no running systemd, but make sure:
        a trivial unit must verify silently, or the tool cannot be used
        here and the real checks would only measure the container."""
        d = os.path.join(self.tmp, "probe")
        os.mkdir(d)
        with open(os.path.join(d, "ck-probe.service"), "w") as f:
            f.write("[Unit]\nDescription=probe\n[Service]\n"
                    "ExecStart=/bin/true\n")
        r = run(["systemd-analyze", "verify",
                 os.path.join(d, "ck-probe.service")], cwd=d, env=env)
        if r.returncode != 0 or r.stdout or r.stderr:
            self.skipTest("systemd-analyze verify does not work here: %s"
                          % (r.stdout + r.stderr).strip()[:300])

    def test_units_verify_silently(self):
        """verify exits 0 on unknown keys and bad values alike, so any
        output at all is a failure."""
        self.need("systemd-analyze")
        d = self.unit_dir()
        env = self.man_env()
        self.verify_works(env)
        for unit in ("cachekeeperd.service", TEMPLATE, INSTANCE):
            r = run(["systemd-analyze", "verify", os.path.join(d, unit)],
                    cwd=d, env=env)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                             "systemd-analyze verify %s" % unit)

    def exposure(self, d, unit):
        r = run(["systemd-analyze", "security", "--offline=yes",
                 "--threshold=%d" % round(MAX_EXPOSURE * 10),
                 os.path.join(d, unit)], cwd=d)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)",
                      r.stdout + r.stderr)
        self.assertIsNotNone(m, "no exposure level in:\n%s%s" %
                             (r.stdout, r.stderr))
        return float(m.group(1)), r

    def test_units_exposure(self):
        """--threshold is the exposure times ten (20 is 2.0): the command
        fails when the unit is above it."""
        self.need("systemd-analyze")
        d = self.unit_dir()
        for unit in ("cachekeeperd.service", INSTANCE):
            level, r = self.exposure(d, unit)
            print("exposure of %s: %.1f" % (unit, level))
            self.assertLessEqual(level, MAX_EXPOSURE, r.stdout)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_exposure_threshold_can_fail(self):
        """The threshold check is real: a unit without a sandbox fails."""
        self.need("systemd-analyze")
        d = os.path.join(self.tmp, "bare")
        os.mkdir(d)
        with open(os.path.join(d, "bare.service"), "w") as f:
            f.write("[Service]\nExecStart=/bin/true\n")
        level, r = self.exposure(d, "bare.service")
        self.assertGreater(level, MAX_EXPOSURE)
        self.assertNotEqual(r.returncode, 0)

    def test_polkit_rule(self):
        """The polkit rule lets the cachekeeper user start, stop, kill and
        reset its node units and nothing else. polkitd is not running
        here: the rule is evaluated by node with polkit's API (addRule,
        action.id, action.lookup, subject.user, polkit.Result)."""
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            self.skipTest("node is not installed (scripts/install-deps "
                          "installs it with npm)")
        rule = os.path.join(PKG, "polkit", "cachekeeper.rules")
        cases = [
            # (user, action, unit, verb, allowed)
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@web-n1.service", "start", True),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@web\\x2dcache-n2.service", "kill", True),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@web-n1.service", "reset-failed", True),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@web-n1.service", "stop", True),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@web-n1.service", "enable", False),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "sshd.service", "stop", False),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@.service", "start", False),
            ("cachekeeper", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@a/../x.service", "start", False),
            ("cachekeeper", "org.freedesktop.systemd1.manage-unit-files",
             "cachekeeper-redis@web-n1.service", "start", False),
            ("www-data", "org.freedesktop.systemd1.manage-units",
             "cachekeeper-redis@web-n1.service", "start", False),
        ]
        # node -e: process.argv[1] is the first argument after the script.
        script = """
const fs = require("fs"), vm = require("vm");
const rules = [];
const polkit = { Result: { YES: "yes", NO: "no", NOT_HANDLED: null },
    addRule: function (f) { rules.push(f); } };
vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"),
    { polkit: polkit }, { filename: process.argv[1] });
const out = JSON.parse(process.argv[2]).map(function (c) {
    const details = { unit: c[2], verb: c[3] };
    const action = { id: c[1], lookup: function (k) { return details[k]; } };
    const subject = { user: c[0] };
    for (const r of rules) {
        const res = r(action, subject);
        if (res !== null && res !== undefined) return res;
    }
    return null;
});
console.log(JSON.stringify(out));
"""
        r = run([node, "-e", script, rule, json.dumps(cases)])
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        for c, res in zip(cases, got):
            self.assertEqual(res == "yes", c[4], "%r gave %r" % (c, res))

    def test_unit_settings(self):
        """The settings the design depends on, as written."""
        unit = read(os.path.join(SYSTEMD, "cachekeeperd.service.in"))
        for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30s",
                     "Restart=on-failure", "KillMode=process",
                     "ExecReload=/bin/kill -HUP $MAINPID",
                     "ExecStart=@sbindir@/cachekeeperd --config "
                     "/etc/cachekeeper/cachekeeperd.yaml",
                     "RuntimeDirectoryPreserve=yes", "User=cachekeeper",
                     "Group=cachekeeper", "UMask=0077"):
            self.assertIn("\n" + line + "\n", unit)
        tmpl = read(os.path.join(SYSTEMD, TEMPLATE))
        # The daemon supervises nodes: systemd must not bring a dead
        # primary back on its own (docs/packaging.md).
        for line in ("Type=notify", "Restart=no", "User=cachekeeper"):
            self.assertIn("\n" + line + "\n", tmpl)
        # A node must not go down with the daemon.
        for dep in ("Requires=", "BindsTo=", "PartOf=", "Requisite="):
            self.assertNotRegex(tmpl, r"(?m)^%s.*cachekeeperd" % dep)
        m = re.search(r"(?m)^ExecStart=/usr/bin/redis-server (\S+)", tmpl)
        self.assertEqual(m.group(1), "%S/cachekeeper/local/%I/redis.conf")
        # The unit make generated (packaging.am), when this tree has one.
        built = os.path.join(BUILD, "packaging", "systemd",
                             "cachekeeperd.service")
        if os.path.exists(built):
            text = read(built)
            self.assertNotRegex(text, r"@[a-z_]+@")
            self.assertRegex(text, r"(?m)^ExecStart=/\S*/cachekeeperd "
                             r"--config /etc/cachekeeper/cachekeeperd.yaml$")

    def test_instance_names_are_systemd_escape(self):
        """CLUSTER/NODE <-> instance, as the template's %I undoes it."""
        self.need("systemd-escape")
        r = run(["systemd-escape", "--template=" + TEMPLATE, "web-cache/n1"])
        self.assertEqual(r.stdout.strip(), INSTANCE)
        r = run(["systemd-escape", "-u", "--instance", INSTANCE])
        self.assertEqual(r.stdout.strip(), "web-cache/n1")

    # --- sysusers.d and tmpfiles.d -------------------------------------

    def unit_modes(self):
        unit = read(os.path.join(SYSTEMD, "cachekeeperd.service.in"))
        return {k: int(v, 8) for k, v in re.findall(
            r"(?m)^(\w+)DirectoryMode=(\d+)$", unit)}

    def test_sysusers_and_tmpfiles(self):
        """Applied to an empty root: the user, the group, and directories
        with the owners and modes the unit resets them to."""
        self.need("systemd-sysusers")
        self.need("systemd-tmpfiles")
        if os.geteuid() != 0:
            self.skipTest("systemd-tmpfiles --root chowns: needs root")
        root = os.path.join(self.tmp, "root")
        for sub in ("etc", "usr/lib/sysusers.d", "usr/lib/tmpfiles.d"):
            os.makedirs(os.path.join(root, sub))
        shutil.copy(os.path.join(SYSTEMD, "cachekeeper.sysusers"),
                    os.path.join(root, "usr/lib/sysusers.d/cachekeeper.conf"))
        shutil.copy(os.path.join(SYSTEMD, "cachekeeper.tmpfiles"),
                    os.path.join(root, "usr/lib/tmpfiles.d/cachekeeper.conf"))
        r = run(["systemd-sysusers", "--root=" + root])
        self.assertEqual(r.returncode, 0, r.stderr)
        users = {l.split(":")[0]: l.split(":") for l in
                 read(os.path.join(root, "etc/passwd")).splitlines()}
        groups = {l.split(":")[0]: l.split(":") for l in
                  read(os.path.join(root, "etc/group")).splitlines()}
        self.assertIn("cachekeeper", users)
        self.assertIn("cachekeeper", groups)
        uid, gid = int(users["cachekeeper"][2]), int(users["cachekeeper"][3])
        self.assertEqual(gid, int(groups["cachekeeper"][2]))
        self.assertLess(uid, 1000, "a system user")
        self.assertEqual(users["cachekeeper"][6], "/usr/sbin/nologin")
        r = run(["systemd-tmpfiles", "--root=" + root, "--create"])
        self.assertEqual(r.returncode, 0, r.stderr)
        modes = self.unit_modes()
        want = {
            "etc/cachekeeper": (0, 0, modes["Configuration"]),
            "etc/cachekeeper/clusters.d": (0, 0, 0o755),
            "var/lib/cachekeeper": (uid, gid, modes["State"]),
            "run/cachekeeper": (uid, gid, modes["Runtime"]),
        }
        for path, (u, g, mode) in want.items():
            st = os.stat(os.path.join(root, path))
            self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777),
                             (u, g, mode), path)

    # --- example configuration -----------------------------------------

    def dconf_keys(self):
        """Every key config/dconf.c accepts, as local.bind etc."""
        src = read(os.path.join(SRC, "config", "dconf.c"))
        keys = set()
        for arr, prefix in (("top_keys", ""), ("local_keys", "local."),
                            ("elasticache_keys", "elasticache."),
                            ("guard_keys", "deletion_guard.")):
            m = re.search(r"%s\[\]\s*=\s*\{(.*?)\};" % arr, src, re.S)
            self.assertIsNotNone(m, "%s not found in dconf.c" % arr)
            keys |= {prefix + k for k in re.findall(r'"(\w+)"', m.group(1))}
        return keys

    def example_keys(self, text):
        """Keys in the example, set or commented out ("# key: value")."""
        keys, section = {}, ""
        for line in text.splitlines():
            m = re.match(r"^( *)(# )?([a-z_]+):", line)
            if not m:
                continue
            indent, commented, key = len(m.group(1)), m.group(2), m.group(3)
            if indent == 0 and not commented:
                section = key
                keys[key] = True
            elif indent == 0:
                keys[key] = False
            elif indent == 2:
                keys[section + "." + key] = not commented
        return keys

    def check_config(self, text):
        d = tempfile.mkdtemp(dir=self.tmp)
        os.mkdir(os.path.join(d, "clusters.d"))
        text, n = re.subn(r"(?m)^clusters_dir: .*$",
                          "clusters_dir: %s/clusters.d" % d, text)
        self.assertEqual(n, 1)
        path = os.path.join(d, "cachekeeperd.yaml")
        with open(path, "w") as f:
            f.write(text)
        return run([os.path.join(BUILD, "cachekeeperd"), "-n", "--config",
                    path])

    def test_example_config_documents_every_key(self):
        known = self.dconf_keys()
        found = self.example_keys(read(EXAMPLE))
        self.assertEqual(sorted(known - set(found)), [],
                         "keys missing from the example")
        extra = set(found) - known
        if extra:
            print("note: example keys this build does not know: %s" %
                  ", ".join(sorted(extra)))

    def test_example_config_passes_check(self):
        if not os.access(os.path.join(BUILD, "cachekeeperd"), os.X_OK):
            self.skipTest("cachekeeperd is not built")
        text = read(EXAMPLE)
        r = self.check_config(text)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("configuration OK", r.stdout)
        # With every commented-out key this build knows set as well, and
        # the entries of a commented-out map ("#   name: value") with it.
        known = self.dconf_keys()
        out, section, in_map = [], "", False
        for line in text.splitlines():
            m = re.match(r"^( *)# ([a-z_]+):(.*)$", line)
            if m:
                indent, key, rest = m.groups()
                full_key = key if indent == "" else section + "." + key
                on = full_key in known
                in_map = on and rest.strip() == ""
                out.append(indent + key + ":" + rest if on else line)
                continue
            m = re.match(r"^( *)#   (\S+: .*)$", line)
            if m and in_map:
                out.append(m.group(1) + "  " + m.group(2))
                continue
            in_map = False
            m = re.match(r"^([a-z_]+):", line)
            if m:
                section = m.group(1)
            out.append(line)
        full = "\n".join(out) + "\n"
        self.assertNotEqual(full, text)
        r = self.check_config(full)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + full)

    def test_example_config_check_can_fail(self):
        """Control: a typo in the example would be caught."""
        if not os.access(os.path.join(BUILD, "cachekeeperd"), os.X_OK):
            self.skipTest("cachekeeperd is not built")
        r = self.check_config(read(EXAMPLE).replace("log_level: info",
                                                    "log_levle: info"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("log_levle", r.stderr)

    # --- man pages ------------------------------------------------------

    def test_man_pages_render_without_warnings(self):
        groff = self.need("groff")
        mandoc = shutil.which("mandoc")
        man = shutil.which("man")
        for page in MAN_PAGES:
            path = os.path.join(MAN, page)
            r = run([groff, "-man", "-ww", "-z", path])
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                             "groff -man -ww -z %s" % page)
            if man:
                r = run([man, "--warnings", "-l", path],
                        env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="",
                                 MANPAGER="cat", PAGER="cat"))
                self.assertEqual((r.returncode, r.stderr), (0, ""),
                                 "man --warnings -l %s" % page)
                self.assertIn(page.rsplit(".", 1)[0].upper(), r.stdout)
            if mandoc:
                r = run([mandoc, "-T", "lint", path])
                self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                                 "mandoc -T lint %s" % page)
        if mandoc is None:
            print("note: mandoc is not installed, lint skipped")

    def test_man_pages_cover_the_interface(self):
        cli = read(os.path.join(MAN, "cachekeeper.1"))
        commands = set(COMMANDS)
        binary = os.path.join(BUILD, "cachekeeper")
        if os.access(binary, os.X_OK):
            # Commands the built client has, so a new one needs a page.
            r = run([binary, "--help"])
            commands |= set(re.findall(r"(?m)^  ([a-z][a-z-]+) ", r.stdout))
        for cmd in commands:
            self.assertRegex(cli, r"(?m)^\.B %s(\s|$)" %
                             re.escape(cmd).replace("\\-", "\\\\-"),
                             "cachekeeper.1 lacks command %s" % cmd)
        for opt in (r"\-\-socket", r"\-\-help", r"\-\-version", r"\-o",
                    r"\-\-watch", "NO_COLOR", "CACHEKEEPER_SOCKET",
                    "EXIT STATUS"):
            self.assertIn(opt, cli)
        d = read(os.path.join(MAN, "cachekeeperd.8"))
        for s in (r"\-\-config", r"\-n", r"\-d", r"\-\-version",
                  r"\-\-help", "SIGHUP", "SIGTERM", "SIGINT", ".SH FILES"):
            self.assertIn(s, d)
        conf = read(os.path.join(MAN, "cachekeeperd.yaml.5"))
        for key in self.dconf_keys():
            name = key.split(".")[-1]
            self.assertRegex(conf, r"(?m)^\.BR? %s" % name,
                             "cachekeeperd.yaml.5 lacks %s" % key)

    # --- bash completion ------------------------------------------------

    def complete(self, *words, path=None, cwd=None):
        """COMPREPLY for the command line words (the last one is being
        completed), from a bash that sourced the script."""
        script = ('source "$1"; shift; COMP_WORDS=("$@"); '
                  'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _cachekeeper; '
                  'printf "%s\\n" "${COMPREPLY[@]}"')
        env = dict(os.environ)
        if path is not None:
            env["PATH"] = path
        r = run(["bash", "--norc", "--noprofile", "-c", script, "bash",
                 COMPLETION] + list(words), cwd=cwd or self.tmp, env=env,
                timeout=20)
        self.assertEqual((r.returncode, r.stderr), (0, ""), words)
        return [w for w in r.stdout.split("\n") if w]

    def test_completion_syntax(self):
        r = run(["bash", "-n", COMPLETION])
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_completion_commands_and_options(self):
        self.assertEqual(self.complete("cachekeeper", "st"), ["status"])
        self.assertEqual(sorted(self.complete("cachekeeper", "")),
                         sorted(COMMANDS))
        self.assertEqual(self.complete("cachekeeper", "status", "-o", ""),
                         ["table", "json", "yaml"])
        self.assertEqual(self.complete("cachekeeper", "plan", "-o", ""),
                         ["text", "json"])
        self.assertEqual(self.complete("cachekeeper", "snapshot", "--n"),
                         ["--name"])
        self.assertIn("--socket", self.complete("cachekeeper", "--s"))
        self.assertEqual(self.complete("cachekeeper", "validate", "--def"),
                         ["--default-backend"])
        self.assertEqual(self.complete("cachekeeper", "validate",
                                       "--default-backend", ""),
                         ["local", "elasticache"])
        binary = os.path.join(BUILD, "cachekeeper")
        if os.access(binary, os.X_OK):
            r = run([binary, "--help"])
            have = set(re.findall(r"(?m)^  ([a-z][a-z-]+) ", r.stdout))
            self.assertEqual(sorted(have - set(COMMANDS)), [],
                             "commands the completion does not know")

    def test_completion_spec_files(self):
        d = os.path.join(self.tmp, "specs")
        os.makedirs(os.path.join(d, "prod"))
        for n in ("a.yaml", "b.yml", "notes.txt"):
            open(os.path.join(d, n), "w").close()
        for cmd in ("validate", "plan"):
            self.assertEqual(sorted(self.complete("cachekeeper", cmd, "",
                                                  cwd=d)),
                             ["a.yaml", "b.yml", "prod"])

    def fake_client(self, body):
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir, exist_ok=True)
        path = os.path.join(bindir, "cachekeeper")
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho \"$@\" >>%s/args\n%s\n" %
                    (self.tmp, body))
        os.chmod(path, 0o755)
        return bindir

    def test_completion_cluster_names_from_daemon(self):
        status = json.dumps([
            {"name": "sessions", "phase": "available",
             "endpoints": {"nodes": [{"name": "n1"}]}},
            {"name": "catalog", "phase": "pending"}])
        bindir = self.fake_client("cat <<'EOF'\n%s\nEOF" % status)
        path = bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin")
        self.assertEqual(sorted(self.complete("cachekeeper", "status", "",
                                              path=path)),
                         ["catalog", "sessions"])
        self.assertEqual(self.complete("cachekeeper", "--socket", "/s/x",
                                       "failover", "se", path=path),
                         ["sessions"])
        # A snapshot or node name after the cluster is the user's to type.
        self.assertEqual(self.complete("cachekeeper", "failover",
                                       "sessions", "", path=path), [])
        self.assertIn("--socket /s/x status -o json",
                      read(os.path.join(self.tmp, "args")))

    def test_completion_without_daemon_is_silent(self):
        bindir = self.fake_client("echo 'cannot connect' >&2; exit 1")
        path = bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin")
        t0 = time.monotonic()
        self.assertEqual(self.complete("cachekeeper", "status", "",
                                       path=path), [])
        # No client installed at all.
        self.assertEqual(self.complete("/nonexistent/cachekeeper",
                                       "reconcile", ""), [])
        self.assertLess(time.monotonic() - t0, 10)

    # --- Grafana dashboard ----------------------------------------------

    def exprs(self, dash):
        out = []

        def walk(panels):
            for p in panels:
                for t in p.get("targets", []):
                    out.append((p.get("title"), t.get("expr", "")))
                walk(p.get("panels", []))
        walk(dash["panels"])
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                q = v.get("query")
                out.append((v["name"], q["query"] if isinstance(q, dict)
                            else q))
        return out

    @staticmethod
    def metric_names(expr):
        """Metric names in a PromQL expression: label matchers, strings
        and ranges removed, histogram series folded to the histogram."""
        e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
        e = re.sub(r"\{[^}]*\}", "", e)
        e = re.sub(r"\[[^\]]*\]", "", e)
        names = set()
        for tok in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
            if tok.startswith(("cachekeeper_", "process_")):
                names.add(re.sub(r"_(bucket|count|sum)$", "", tok)
                          if tok.startswith(
                              "cachekeeper_reconcile_duration_seconds")
                          else tok)
        return names

    def test_grafana_dashboard(self):
        dash = json.loads(read(DASHBOARD))
        self.assertTrue(36 <= dash["schemaVersion"] <= 39,
                        dash["schemaVersion"])
        ids = []

        def walk(panels):
            for p in panels:
                ids.append(p["id"])
                self.assertIn("gridPos", p)
                walk(p.get("panels", []))
        walk(dash["panels"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        used = set()
        exprs = self.exprs(dash)
        self.assertGreater(len(exprs), 10)
        for title, expr in exprs:
            names = self.metric_names(expr)
            self.assertTrue(names, "%s: no metric in %r" % (title, expr))
            self.assertEqual(sorted(names - METRICS), [],
                             "%s: unknown metric in %r" % (title, expr))
            used |= names
        self.assertEqual(sorted(METRICS - used), [],
                         "metrics no panel shows")

    def test_grafana_metric_check_can_fail(self):
        self.assertEqual(self.metric_names(
            'rate(cachekeeper_reconciles_total{job=~"cachekeeper_x"}[5m])'),
            {"cachekeeper_reconciles_total"})


if __name__ == "__main__":
    cklib.main()
