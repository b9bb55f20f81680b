#!/usr/bin/python3
"""cachekeeperd as systemd and an operator see it: sd_notify readiness,
status, watchdog, reload and stop; -n configuration checks; the state
directory lock; restarts."""

import os
import re
import signal
import subprocess
import time

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON, TEST_DAEMON


class NotifyTest(DaemonTest):

    def test_ready_status_and_stopping(self):
        d = self.daemon()
        d.write("a.yaml", spec("alpha") + "---\n" + spec("beta"))
        d.write("bad.yaml", spec("gamma", extra="port: 0"))
        d.start()
        wait_for(lambda: d.notify.seen("READY=1"), what="READY=1")
        # STATUS= summarises every cluster; it converges to all in sync.
        wait_for(lambda: "STATUS=3 clusters: 2 in sync, 1 spec error; "
                 "1 invalid spec file" in d.notify.poll(),
                 what="summary status")
        msgs = d.notify.poll()
        self.assertLess(msgs.index("READY=1"), len(msgs))
        self.assertEqual(d.stop(), 0)
        self.assertTrue(d.notify.seen("STOPPING=1"))
        self.assertIn("managed clusters keep running", d.log())

    def test_extend_timeout_before_ready(self):
        d = self.daemon()
        d.write("a.yaml", spec("alpha"))
        d.start()
        wait_for(lambda: d.notify.seen("READY=1"), what="READY=1")
        msgs = d.notify.poll()
        ext = [i for i, m in enumerate(msgs)
               if m.startswith("EXTEND_TIMEOUT_USEC=")]
        self.assertTrue(ext, msgs)
        self.assertEqual(msgs[ext[0]], "EXTEND_TIMEOUT_USEC=90000000")
        self.assertLess(ext[0], msgs.index("READY=1"))

    def test_status_shows_the_long_operation(self):
        d = self.daemon()
        d.write("a.yaml", spec("alpha", extra="cluster_size: 2",
                               labels={"test-op-ms": "3000"}))
        d.write("b.yaml", spec("beta"))
        d.start()
        wait_for(lambda: "STATUS=2 clusters: 2 in sync" in d.notify.poll(),
                 what="in sync")
        d.write("a.yaml", spec("alpha", extra="cluster_size: 4",
                               labels={"test-op-ms": "3000"}))
        m = wait_for(lambda: [x for x in d.notify.seen("STATUS=") if
                              re.search(r"; alpha: .*\(add-replicas "
                                        r"\d+/3000 ms\)$", x)],
                     10, what="STATUS with the long operation")
        self.assertIn("1 converging", m[0])
        wait_for(lambda: d.notify.poll()[-1] ==
                 "STATUS=2 clusters: 2 in sync" or
                 "STATUS=2 clusters: 2 in sync" in d.notify.poll()[-3:],
                 15, what="back in sync")

    def test_ready_comes_after_first_load(self):
        d = self.daemon()
        for i in range(50):
            d.write("f%02d.yaml" % i, spec("c%02d" % i))
        d.start()
        wait_for(lambda: d.notify.seen("READY=1"), what="READY=1")
        log = d.log()
        self.assertLess(log.index("loaded 50 files (start-up)"),
                        log.index("info: ready"))

    def test_watchdog_pings_when_asked(self):
        d = self.daemon(env={"WATCHDOG_USEC": "400000",
                             "WATCHDOG_PID": ""})
        d.env.pop("WATCHDOG_PID")
        d.start()
        # Every WATCHDOG_USEC/2 = 200 ms, whatever the machine's speed.
        t0 = time.monotonic()
        time.sleep(1.5 * cklib.SLOW)
        n0 = len(d.notify.seen("WATCHDOG=1"))
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(n0, int(elapsed / 0.2 * 0.6),
                                "only %d watchdog pings in %.1fs" %
                                (n0, elapsed))
        self.assertLessEqual(n0, int(elapsed / 0.2) + 2)

    def test_stuck_supervisor_never_stalls_the_daemon(self):
        # Nobody reads the notify socket: its queue fills after a few
        # messages. The daemon must drop them, not block its loop.
        d = self.daemon(notify_read=False)
        d.start()
        # One cluster after another: dozens of STATUS= changes.
        for i in range(15):
            d.write("f%02d.yaml" % i, spec("c%02d" % i))
            d.wait_status("c%02d" % i, phase="available", timeout=10)
        d.write("f00.yaml", spec("c00", extra="cluster_size: 4"))
        wait_for(lambda: d.status("c00")["endpoints"].get("nodes") == 4,
                 what="still reconciling")
        self.assertEqual(d.stop(), 0)

    def test_no_watchdog_unless_asked(self):
        d = self.daemon()
        d.start()
        time.sleep(0.5)
        self.assertEqual(d.notify.seen("WATCHDOG=1"), [])

    def test_runs_without_systemd(self):
        d = self.daemon(notify=False)
        d.write("a.yaml", spec("alpha"))
        d.start()
        d.wait_status("alpha", phase="available")
        self.assertEqual(d.stop(), 0)

    def test_sighup_reloads_config_and_specs(self):
        d = self.daemon()
        d.write("a.yaml", spec("alpha"))
        d.start()
        d.wait_status("alpha", phase="available")
        # A new clusters_dir and default backend take effect on SIGHUP.
        other = os.path.join(self.tmp, "other")
        os.makedirs(other)
        with open(os.path.join(other, "b.yaml"), "w") as f:
            f.write(spec("beta"))
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nlog_level: debug\n"
                    % (other, d.state))
        d.send(signal.SIGHUP)
        wait_for(lambda: d.notify.seen("RELOADING=1"), what="RELOADING=1")
        d.wait_status("beta", phase="available")
        d.wait_status("alpha", phase="retained")
        msgs = d.notify.poll()
        rel = [i for i, m in enumerate(msgs) if m == "RELOADING=1"][0]
        self.assertIn("READY=1", msgs[rel:])
        self.assertTrue(any(m.startswith("MONOTONIC_USEC=") for m in msgs))

    def test_bad_reload_keeps_running_config(self):
        d = self.daemon()
        d.write("a.yaml", spec("alpha"))
        d.start()
        d.wait_status("alpha", phase="available")
        with open(d.conf) as f:
            good = f.read()
        with open(d.conf, "w") as f:
            f.write(good + "resync_intervall: 5s\n")
        d.send(signal.SIGHUP)
        d.wait_log("keeping the running one")
        self.assertIn("unknown key 'resync_intervall' in configuration, "
                      "did you mean 'resync_interval'?", d.log())
        # Still watching the same directory with the old configuration.
        d.write("b.yaml", spec("beta"))
        d.wait_status("beta", phase="available")
        self.assertIsNone(d.proc.poll())

    def test_sigint_stops_cleanly(self):
        d = self.daemon()
        d.start()
        self.assertEqual(d.stop(signal.SIGINT), 0)
        self.assertTrue(d.notify.seen("STOPPING=1"))


class CheckTest(DaemonTest):
    """cachekeeperd -n: check everything, print every error, exit."""

    def run_check(self, d, binary=DAEMON):
        p = subprocess.run([binary, "-n", "-f", d.conf],
                           capture_output=True, text=True, timeout=10)
        return p.returncode, p.stdout, p.stderr

    def test_good_config(self):
        d = self.daemon(notify=False)
        d.write("a.yaml", spec("alpha", backend="local"))
        rc, out, err = self.run_check(d)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("configuration OK", out)

    def test_bad_specs_every_error_printed(self):
        d = self.daemon(notify=False)
        d.write("a.yaml", spec("alpha", backend="local",
                               extra="port: 70000\ncluster_size: 0"))
        d.write("b.yaml", spec("beta", backend="local"))
        d.write("c.yaml", spec("beta", backend="local"))
        rc, out, err = self.run_check(d)
        self.assertEqual(rc, 1)
        self.assertNotIn("configuration OK", out)
        lines = err.strip().split("\n")
        self.assertIn("%s/a.yaml:7:9: spec.port must be 1..65535, got 70000"
                      % d.specs, lines)
        self.assertIn("%s/a.yaml:8:17: spec.cluster_size must be 1..6, got 0"
                      % d.specs, lines)
        self.assertTrue(any(re.match(r".*/b\.yaml:4:9: cluster 'beta' is "
                                     r"also defined at .*/c\.yaml:4:9", l)
                            for l in lines), err)
        self.assertEqual(len(lines), 4, err)

    def test_bad_daemon_config(self):
        d = self.daemon(notify=False)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nresync_interval: 10\n"
                    "log_level: loud\nlocal:\n  port_range: 9-2\n" % d.specs)
        rc, out, err = self.run_check(d)
        self.assertEqual(rc, 1)
        self.assertIn("cachekeeperd.yaml:2:18: resync_interval must be a "
                      "duration from 1s to 24h", err)
        self.assertIn("cachekeeperd.yaml:3:12: log_level must be one of "
                      "error, warning, notice, info or debug, got 'loud'", err)
        self.assertIn("cachekeeperd.yaml:5:15: local.port_range must be "
                      "FIRST-LAST", err)

    def test_missing_config_file(self):
        p = subprocess.run([DAEMON, "-n", "-f", os.path.join(self.tmp,
                            "nope.yaml")], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("nope.yaml: cannot read: No such file or directory",
                      p.stderr)

    def test_start_refuses_bad_config(self):
        d = self.daemon(notify=False)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: [\n")
        d.start(wait_ready=False)
        wait_for(lambda: d.proc.poll() is not None, what="daemon exit")
        self.assertEqual(d.proc.returncode, 1)
        self.assertIn("YAML syntax error", d.log())

    def test_version_and_help(self):
        for args in (["--version"], ["--help"]):
            p = subprocess.run([DAEMON] + args, capture_output=True,
                               text=True)
            self.assertEqual(p.returncode, 0)
        self.assertIn("usage: cachekeeperd", subprocess.run(
            [DAEMON, "--help"], capture_output=True, text=True).stdout)
        p = subprocess.run([DAEMON, "--bogus"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 2)


class LifecycleTest(DaemonTest):

    def test_one_daemon_per_state_dir(self):
        d1 = self.daemon()
        d1.start()
        d2 = cklib.Daemon(self.tmp, notify=False)
        self.daemons.append(d2)
        d2.log_path = os.path.join(self.tmp, "second.log")
        d2.start(wait_ready=False)
        wait_for(lambda: d2.proc.poll() is not None, what="second exits")
        self.assertEqual(d2.proc.returncode, 1)
        self.assertIn("is owned by another cachekeeperd (pid %d)" % d1.pid(),
                      d2.log())

    def test_restart_keeps_retained_clusters_safe(self):
        d = self.daemon()
        path = d.write("a.yaml", spec("alpha", extra="deletion_policy: "
                                      "delete"))
        d.write("b.yaml", spec("beta"))
        d.start()
        d.wait_status("alpha", phase="available")
        d.wait_status("beta", phase="available")
        self.assertEqual(d.stop(), 0)
        # Started again without alpha's spec: it is not deleted, whatever
        # its policy, because its spec was never seen by this daemon.
        os.unlink(path)
        d.start()
        st = d.wait_status("alpha", phase="retained")
        self.assertIn("spec not found at start-up", st["message"])
        d.wait_status("beta", phase="available")
        time.sleep(0.3)
        self.assertNotIn("test backend applies delete", d.log())

    def test_backoff_on_failing_step(self):
        d = self.daemon()
        d.write("a.yaml", spec("alpha", labels={"test-fail": "create",
                                                 "test-fail-times": "2"}))
        d.start()
        st = d.wait_status("alpha", phase="available", timeout=15)
        log = d.log()
        self.assertEqual(log.count("test backend applies create"), 3)
        # The repeated identical error is logged at warning once only.
        self.assertEqual(log.count("warning: cluster alpha: step failed: "
                                   "injected failure"), 1)
        retries = [int(x) for x in re.findall(r"will retry in (\d+)ms", log)]
        self.assertEqual(len(retries), 2)
        self.assertTrue(500 <= retries[0] <= 1000, retries)
        self.assertTrue(1000 <= retries[1] <= 2000, retries)
        self.assertIsNone(st["last_error"])

    def test_missing_aws_credentials_are_reported(self):
        # No credentials anywhere, and no instance metadata service (never
        # the real 169.254.169.254 from a test): the cluster says so.
        env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                               "AWS_SESSION_TOKEN", "AWS_PROFILE",
                               "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")}
        env.update({"AWS_EC2_METADATA_DISABLED": "true",
                    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                    "AWS_CONFIG_FILE": "/nonexistent"})
        d = self.daemon(binary=DAEMON, env=env)
        d.write("a.yaml", spec("alpha", backend="elasticache"))
        d.start()
        st = wait_for(lambda: d.status("alpha")["last_error"] and
                      d.status("alpha"), what="credentials error")
        self.assertIn("no AWS credentials", st["last_error"])
        self.assertIn("AWS_EC2_METADATA_DISABLED", st["last_error"])
        self.assertEqual(st["phase"], "pending")
        ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
        self.assertEqual((ready["status"], ready["reason"]),
                         ("False", "BackendError"))


class DeletionGuardTest(DaemonTest):
    """A broken checkout must never delete a fleet."""

    def fleet(self, d, n=10):
        for i in range(n):
            d.write("c%02d.yaml" % i, spec("c%02d" % i, extra=
                    "deletion_policy: delete\nfinal_snapshot: false"))

    def start(self):
        d = self.daemon()
        self.sock = os.path.join(d.tmp, "ctl.sock")
        with open(d.conf, "a") as f:
            f.write("control_socket: %s\n" % self.sock)
        return d

    def test_many_specs_gone_at_once_are_held(self):
        d = self.start()
        self.fleet(d)
        d.start()
        for i in range(10):
            d.wait_status("c%02d" % i, phase="available", timeout=10)
        # One spec removed is an ordinary deletion.
        os.unlink(os.path.join(d.specs, "c09.yaml"))
        wait_for(lambda: not os.path.exists(d.status_path("c09")), 10,
                 what="c09 deleted")
        # Six of the nine left vanish at once: nothing is deleted.
        for i in range(6):
            os.unlink(os.path.join(d.specs, "c%02d.yaml" % i))
        for i in range(6):
            st = d.wait_status("c%02d" % i, phase="retained", timeout=10)
            self.assertIn("mass-deletion guard: 6 of 9", st["deletion_held"])
            self.assertFalse(st["deleted"])
        wait_for(lambda: [m for m in d.notify.seen("STATUS=") if
                          "deletion guard holds 6 deletions" in m],
                 what="STATUS= says so")
        self.assertIn("mass-deletion guard: 6 of 9 cluster specs "
                      "disappeared", d.log())
        time.sleep(0.5)
        self.assertEqual(d.log().count("test backend applies delete"), 1)
        # Two come back: no longer held, available again.
        self.fleet(d, 2)
        d.wait_status("c00", phase="available", timeout=10)
        d.wait_status("c01", phase="available", timeout=10)
        # One more vanishes while the guard holds: held as well.
        os.unlink(os.path.join(d.specs, "c08.yaml"))
        d.wait_status("c08", phase="retained", timeout=10)
        # An operator confirms two, then the rest.
        env = dict(os.environ, CACHEKEEPER_SOCKET=self.sock)
        r = subprocess.run([cklib.CLI, "confirm-deletions", "c02", "c03"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(r.stdout.split("\n")[:2]),
                         ["c02: deletion confirmed",
                          "c03: deletion confirmed"])
        for n in ("c02", "c03"):
            wait_for(lambda: not os.path.exists(d.status_path(n)), 10,
                     what="%s deleted" % n)
        self.assertEqual(d.status("c04")["phase"], "retained")
        r = subprocess.run([cklib.CLI, "confirm-deletions"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        for n in ("c04", "c05", "c08"):
            wait_for(lambda: not os.path.exists(d.status_path(n)), 10,
                     what="%s deleted" % n)
        for n in ("c00", "c01", "c06", "c07"):
            self.assertEqual(d.status(n)["phase"], "available")

    def test_emptied_directory_deletes_nothing(self):
        d = self.start()
        with open(d.conf, "a") as f:
            f.write("deletion_guard: {max_fraction: 0.9, max_count: 100}\n")
        self.fleet(d, 4)
        d.start()
        for i in range(4):
            d.wait_status("c%02d" % i, phase="available", timeout=10)
        # Removed over several scans, as a slow checkout would: the guard
        # still judges them together.
        for i in range(4):
            os.unlink(os.path.join(d.specs, "c%02d.yaml" % i))
            time.sleep(0.25)
        for i in range(4):
            st = d.wait_status("c%02d" % i, phase="retained", timeout=10)
            self.assertIn("4 of 4", st["deletion_held"])
        self.assertGreaterEqual(d.log().count("loaded "), 3)
        time.sleep(0.5)
        self.assertNotIn("test backend applies delete", d.log())

    def test_guard_settings_are_checked(self):
        d = self.daemon()
        with open(d.conf, "a") as f:
            f.write("deletion_guard: {max_fraction: 1.5, max_count: 0}\n")
        r = subprocess.run([cklib.TEST_DAEMON, "-n", "--config", d.conf],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stdout + r.stderr, r"deletion_guard\.max_fraction "
                         r"must be a number 0\.\.1")
        self.assertRegex(r.stdout + r.stderr, r"deletion_guard\.max_count "
                         r"must be 1\.\.1000000, got 0")


class StrictModesTest(DaemonTest):
    """Who can write a spec can run anything on the host: specs and the
    daemon config are read only from files and directories that only root
    or the daemon's user can write, and the error names the unsafe path."""

    def test_unsafe_spec_files_and_dirs_are_refused(self):
        d = self.daemon()
        d.write("good.yaml", spec("alpha"))
        p = d.write("open.yaml", spec("beta"))
        os.chmod(p, 0o664)
        os.makedirs(os.path.join(d.specs, "team"))
        d.write("team/c.yaml", spec("gamma"))
        os.chmod(os.path.join(d.specs, "team"), 0o777)
        q = d.write("other.yaml", spec("delta"))
        os.chown(q, 65534, 65534)
        d.start()
        d.wait_status("alpha", phase="available")
        log = d.log()
        self.assertIn("%s: not read: %s is writable by its group (mode 0664)"
                      % (p, p), log)
        team = os.path.realpath(os.path.join(d.specs, "team"))
        self.assertIn("not read: %s is writable by group and others (mode "
                      "0777); cachekeeperd reads only files that no one "
                      "else can change (chmod go-w %s)" % (team, team), log)
        self.assertIn("not read: %s is owned by uid 65534, not by root or "
                      "the daemon's user" % os.path.realpath(q), log)
        for n in ("beta", "gamma", "delta"):
            st = d.status(n)
            self.assertTrue(st is None or st["phase"] != "available", n)
        # The same answer from validate.
        r = subprocess.run([cklib.CLI, "validate", d.specs],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is writable by its group (mode 0664)", r.stdout +
                      r.stderr)
        # A running cluster whose file turns unsafe keeps its last spec.
        g = os.path.join(d.specs, "good.yaml")
        os.chmod(g, 0o666)
        with open(g, "a") as f:
            f.write("  cluster_size: 5\n")
        st = d.wait_status("alpha", phase="spec-error")
        self.assertIn("writable by group and others", st["spec_errors"][0])
        os.chmod(g, 0o644)
        d.write("good.yaml", spec("alpha"))
        d.wait_status("alpha", phase="available")

    def test_unsafe_daemon_config_is_refused(self):
        d = self.daemon()
        os.chmod(d.conf, 0o646)
        r = subprocess.run([TEST_DAEMON, "-n", "--config", d.conf],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not read: %s is writable by others (mode 0646)" %
                      os.path.realpath(d.conf), r.stdout + r.stderr)

    def test_token_in_an_unsafe_directory_is_refused(self):
        d = self.daemon()
        sec = os.path.join(self.tmp, "secrets")
        os.makedirs(sec)
        os.chmod(sec, 0o775)
        tok = os.path.join(sec, "t")
        with open(os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("abcdefghijklmnopqrstuvwx\n")
        d.write("a.yaml", spec("alpha", extra="auth_token_file: %s" % tok))
        r = subprocess.run([cklib.CLI, "validate", d.specs],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("spec.auth_token_file '%s': %s is writable by its "
                      "group (mode 0775)" % (tok, os.path.realpath(sec)),
                      r.stdout)


if __name__ == "__main__":
    cklib.main()
