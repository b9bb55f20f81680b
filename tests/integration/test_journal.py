#!/usr/bin/python3
"""Structured logging under journald: with JOURNAL_STREAM naming its
stderr, the daemon sends cluster lines to the journal's native socket with
CLUSTER=, BACKEND= and STEP= fields (so `journalctl -u cachekeeperd
CLUSTER=alpha` works) and prefixes its other lines with <N> priorities.

The journal here is the test itself: in a private mount namespace
(unshare -m, as root) a tmpfs hides /run, and the test binds the datagram
socket /run/systemd/journal/socket that libsystemd's sd_journal_send()
writes to, and parses the native protocol. Nothing outside the namespace
is touched; every process started is stopped by its pid."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import cklib
from cklib import TEST_DAEMON, spec

INNER = r'''
import json, os, socket, struct, subprocess, sys, time
tmp, daemon, spec_text = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs("/run/systemd/journal", exist_ok=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
s.settimeout(0.1)
specs = os.path.join(tmp, "specs")
os.makedirs(specs, exist_ok=True)
conf = os.path.join(tmp, "d.yaml")
with open(conf, "w") as f:
    f.write("clusters_dir: %s\nstate_dir: %s/state\n" % (specs, tmp))
log = open(os.path.join(tmp, "stderr"), "w")
st = os.fstat(log.fileno())
env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
env.pop("NOTIFY_SOCKET", None)
p = subprocess.Popen([daemon, "--config", conf], stdout=log, stderr=log,
                     env=env)
entries = []
try:
    time.sleep(0.3)
    with open(os.path.join(specs, "a.yaml"), "w") as f:
        f.write(spec_text)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            data = s.recv(1 << 20)
        except socket.timeout:
            if any("in sync" in e.get("MESSAGE", "") for e in entries):
                break
            continue
        e, i = {}, 0
        while i < len(data):
            nl = data.index(b"\n", i)
            line = data[i:nl]
            if b"=" in line:
                k, v = line.split(b"=", 1)
                i = nl + 1
            else:
                k = line
                n = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
                v = data[nl + 9:nl + 9 + n]
                i = nl + 9 + n + 1
            e[k.decode()] = v.decode(errors="replace")
        entries.append(e)
finally:
    p.terminate()
    p.wait(10)
    log.close()
print(json.dumps(entries))
'''


class JournalTest(unittest.TestCase):

    def test_cluster_lines_carry_fields(self):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a private mount "
                          "namespace")
        tmp = tempfile.mkdtemp(prefix="ck-journal-")
        self.addCleanup(shutil.rmtree, tmp, True)
        helper = os.path.join(tmp, "inner.py")
        with open(helper, "w") as f:
            f.write(INNER)
        r = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs tmpfs /run && exec /usr/bin/python3 "$@"',
             "sh", helper, tmp, TEST_DAEMON, spec("alpha")],
            capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and "mount" in r.stderr and \
                "permission" in r.stderr.lower():
            self.skipTest("no mount namespaces here: %s" % r.stderr.strip())
        self.assertEqual(r.returncode, 0, r.stderr)
        entries = json.loads(r.stdout)
        mine = [e for e in entries if e.get("CLUSTER") == "alpha"]
        self.assertTrue(mine, entries)
        for e in mine:
            self.assertTrue(e["MESSAGE"].startswith("cluster alpha: "), e)
            self.assertIn(e["PRIORITY"], "34567")
            self.assertEqual(e["SYSLOG_IDENTIFIER"], "cachekeeperd")
        created = [e for e in mine if "pending -> creating" in e["MESSAGE"]]
        self.assertTrue(created, [e["MESSAGE"] for e in mine])
        self.assertEqual((created[0]["BACKEND"], created[0]["STEP"]),
                         ("test", "create"))
        self.assertTrue(any("in sync" in e["MESSAGE"] and e["STEP"] == ""
                            for e in mine))
        # The daemon's own lines go to stderr with <N> priorities.
        with open(os.path.join(tmp, "stderr")) as f:
            err = f.read()
        self.assertRegex(err, r"(?m)^<6>cachekeeperd .* starting")
        self.assertNotIn("cluster alpha:", err)


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    failed = len(res.failures) + len(res.errors)
    skipped = len(res.skipped)
    print("%d passed, %d failed, %d skipped" % (
        res.testsRun - failed - skipped, failed, skipped))
    for t, why in res.skipped:
        print("skipped %s: %s" % (t.id(), why))
    sys.exit(1 if failed else (77 if skipped == res.testsRun else 0))
