#!/usr/bin/python3
"""Hostile and broken spec files, end to end: `cachekeeper validate` and
a running daemon given wrong types everywhere, huge and negative numbers,
deep nesting, alias bombs, binary junk, a 1 MiB line, invalid UTF-8 and
NUL bytes. Every one is refused with FILE:LINE:COL errors, quickly and
without a crash; the daemon keeps running its good cluster and never
creates a cluster from a bad file.

The small cases are files in tests/fuzz/badspecs/ (the spec fuzz harness
replays them too); the big ones are generated here, into the test's own
temporary directory, so that nothing big is committed."""

import os
import random
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import cklib
from cklib import DaemonTest, spec, wait_for

BADSPECS = os.path.join(cklib.SRCDIR, "tests", "fuzz", "badspecs")
LIMIT = 1024 * 1024                 # SPEC_MAX_FILE_BYTES
MAX_SECONDS = 1.0 * cklib.SLOW      # CPU per file, validate
SUMMARY = re.compile(r"^\d+ files?, \d+ (valid )?clusters?")


def header(name):
    return ("apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
            "metadata:\n  name: %s\n" % name)


def generated():
    """The big cases, as {file name: bytes}; each is at most 1 MiB."""
    g = {}
    h = header("gen-line") + "spec:\n  engine_version: \""
    g["gen-1mib-line.yaml"] = (h + "7" * (LIMIT - len(h) - 2) + "\"\n")
    h = header("gen-line-comment")
    g["gen-1mib-comment.yaml"] = h + "#" + "x" * (LIMIT - len(h) - 2) + "\n"
    # About 49,000 keys: each unknown, then each repeated.
    g["gen-many-keys.yaml"] = header("gen-keys") + "spec:\n" + "".join(
        "  k%d: 1\n" % i for i in range(49000))
    g["gen-many-labels.yaml"] = (header("gen-labels") + "  labels:\n" +
                                 "".join("    l%d: [v]\n" % i
                                         for i in range(24000)))
    g["gen-many-dup-keys.yaml"] = header("gen-dups") + "spec:\n  tags:\n" + (
        "    t: v\n" * 49000)
    g["gen-many-anchors.yaml"] = (
        header("gen-anchors") + "spec:\n  tags:\n" +
        "".join("    t%d: &a%d v\n" % (i, i) for i in range(24000)) +
        "  parameters:\n" +
        "".join("    p%d: *a%d\n" % (i, i) for i in range(24000)) +
        "  port: *a0\n")
    # Errors found in the reverse of file order (spec before metadata).
    g["gen-reversed-errors.yaml"] = (
        "spec:\n  tags:\n" +
        "".join("    t%d: [x]\n" % i for i in range(16000)) +
        "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
        "  name: gen-reversed\n  labels:\n" +
        "".join("    l%d: [x]\n" % i for i in range(16000)))
    g["gen-many-docs-same-name.yaml"] = "".join(
        "--- {metadata: {name: gen-twice%d}}\n" % (i % 2)
        for i in range(16000))
    g["gen-many-docs.yaml"] = "".join(
        "--- {apiVersion: cachekeeper/v1, kind: RedisCluster, "
        "metadata: {name: gen-doc%d}, spec: {port: 0}}\n" % i
        for i in range(8000))
    g["gen-deep-seq.yaml"] = (header("gen-deep") + "spec:\n  tags: " +
                              "[" * 400000 + "]" * 400000 + "\n")
    g["gen-deep-map.yaml"] = (header("gen-deep-map") + "spec:\n  tags: " +
                              "{a: " * 200000 + "\n")
    bomb = header("gen-bomb") + "spec:\n  tags:\n    a0: &a0 [x, x]\n"
    for i in range(1, 60):
        bomb += "    a%d: &a%d [*a%d, *a%d]\n" % (i, i, i - 1, i - 1)
    g["gen-alias-bomb-deep.yaml"] = bomb
    g["gen-alias-bomb-wide.yaml"] = (
        header("gen-wide") + "spec:\n  tags:\n    a: &a [" +
        ", ".join(["x"] * 5000) + "]\n    b: [" +
        ", ".join(["*a"] * 5000) + "]\n")
    g["gen-long-scalars.yaml"] = (
        header("gen-long") + "spec:\n  tags:\n" +
        "".join("    k%d: %s\n" % (i, "v" * 20000) for i in range(50)))
    rnd = random.Random(1)
    g["gen-binary.yaml"] = bytes(rnd.randrange(256) for _ in range(LIMIT))
    g["gen-nul.yaml"] = header("gen-nul").encode() + b"\0" * (LIMIT - 100)
    g["gen-invalid-utf8-late.yaml"] = (
        header("gen-utf8") + "spec:\n  tags:\n" +
        "".join("    k%d: v\n" % i for i in range(60000))).encode()[
            :LIMIT - 10] + b"\xc3\x28\n"
    out = {}
    for k, v in g.items():
        out[k] = v if isinstance(v, bytes) else v.encode()
        assert len(out[k]) <= LIMIT, (k, len(out[k]))
    return out


def bad_files(directory):
    """Every bad spec: the committed ones and the generated ones."""
    paths = []
    for n in sorted(os.listdir(BADSPECS)):
        paths.append(os.path.join(BADSPECS, n))
    for n, data in sorted(generated().items()):
        p = os.path.join(directory, n)
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)
    return paths


def names_in(path):
    """Cluster names a bad file means (what metadata.name says)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    return set(re.findall(r"name: \"?((?:bad|gen)-[a-z0-9-]+)", text))


def validate(*args):
    """Run validate; returns the process and the CPU seconds it used
    (user + system: what the parser costs, whatever else the machine
    runs). A run that hangs fails on the wall-clock timeout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([cklib.CLI, "validate"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30 * cklib.SLOW)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime +
           after.ru_stime - before.ru_stime)
    return p, cpu


class ValidateTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ck-badspecs-")
        cls.paths = bad_files(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check_output(self, path, p):
        out = p.stdout.decode("utf-8", errors="replace")
        lines = out.rstrip("\n").split("\n")
        self.assertTrue(SUMMARY.match(lines[-1]), out[-2000:])
        pattern = re.compile(r"^%s:[1-9][0-9]*:[1-9][0-9]*: \S.*$" %
                             re.escape(path))
        errors = lines[:-1]
        self.assertGreater(len(errors), 0, out[-2000:])
        # At most 100 per file, then one line counting the rest.
        self.assertLessEqual(len(errors), 101)
        if len(errors) == 101:
            self.assertRegex(errors[-1], r": too many errors: \d+ more")
        for line in errors:
            self.assertRegex(line, pattern)

    def test_each_file_is_refused_with_positions(self):
        self.assertGreater(len(self.paths), 50)
        for path in self.paths:
            with self.subTest(file=os.path.basename(path)):
                p, took = validate(path)
                self.assertGreaterEqual(p.returncode, 0,
                                        "killed by signal %d" %
                                        -p.returncode)
                self.assertEqual(p.returncode, 1, p.stdout[-2000:])
                self.assertEqual(p.stderr, b"")
                self.check_output(path, p)
                self.assertLess(took, MAX_SECONDS,
                                "validate took %.2fs of CPU" % took)

    def test_whole_directory_at_once(self):
        # The daemon's own directory rules (specdir), every file together.
        d = os.path.join(self.tmp, "all")
        os.makedirs(d)
        for path in self.paths:
            shutil.copy(path, d)
        p, took = validate(d)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, b"")
        out = p.stdout.decode("utf-8", errors="replace")
        lines = out.rstrip("\n").split("\n")
        self.assertTrue(SUMMARY.match(lines[-1]), lines[-1])
        self.assertIn("0 valid clusters", lines[-1])
        for line in lines[:-1]:
            self.assertRegex(line, r"^%s/[^:]+:[1-9][0-9]*:[1-9][0-9]*: " %
                             re.escape(d))
        self.assertLess(took, 10 * MAX_SECONDS)

    def test_over_the_size_limit(self):
        # Larger than 1 MiB: refused before it is read. A whole-file
        # error has no position ("FILE: message"), as the unit tests pin.
        path = os.path.join(self.tmp, "over.yaml")
        with open(path, "wb") as f:
            f.write(header("gen-over").encode() + b"#" * LIMIT + b"\n")
        p, took = validate(path)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, b"")
        self.assertIn(b"%s: file is larger than the limit of 1048576 bytes"
                      % path.encode(), p.stdout)
        self.assertLess(took, MAX_SECONDS)


class DaemonBadSpecsTest(DaemonTest):

    def test_daemon_survives_every_bad_file(self):
        d = self.daemon(notify=False)
        d.start()
        d.write("good.yaml", spec("good", extra="cluster_size: 2"))
        d.wait_status("good", phase="available")
        gen = os.path.join(self.tmp, "gen")
        os.makedirs(gen)
        paths = bad_files(gen)
        t0 = time.monotonic()
        names = set()
        for i, path in enumerate(paths):
            with open(path, "rb") as f:
                data = f.read()
            names |= names_in(path)
            # Half of them written in place, half renamed into place.
            target = os.path.join(d.specs, "bad", os.path.basename(path))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if i % 2:
                with open(target, "wb") as f:
                    f.write(data)
            else:
                tmp = os.path.join(d.specs, "bad",
                                   "." + os.path.basename(path) + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(data)
                os.rename(tmp, target)
        self.assertGreater(len(names), 30)
        # Every file was read: each one's errors are in the log.
        for path in paths:
            base = os.path.basename(path)
            d.wait_log("/bad/%s:" % base, timeout=20)
        d.alive()
        # Each one is parsed in milliseconds; all of them, with the
        # rescans between, in seconds (not minutes of a blocked loop).
        self.assertLess(time.monotonic() - t0, 30 * cklib.SLOW)
        # Still responsive: a change to the good cluster goes through.
        d.write("good.yaml", spec("good", extra="cluster_size: 3"))
        wait_for(lambda: d.status("good")["endpoints"].get("nodes") == 3,
                 timeout=20, what="good cluster scaled to 3 nodes")
        d.wait_status("good", phase="available")
        for name in sorted(names):
            st = d.status(name)
            if st is not None:
                self.assertEqual(st.get("phase"), "spec-error",
                                 "%s: %r" % (name, st))
        log = d.log()
        for name in sorted(names):
            self.assertNotIn("cluster %s: test backend applies" % name, log)
        # A SIGHUP reload parses them all again, and nothing changes.
        d.send(signal.SIGHUP)
        d.wait_log("info: reload done", timeout=20)
        time.sleep(0.5)
        d.alive()
        d.wait_status("good", phase="available")


if __name__ == "__main__":
    cklib.main()
