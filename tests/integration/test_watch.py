#!/usr/bin/python3
"""The directory watcher, end to end with the real daemon: every way a
GitOps pipeline or an editor changes files is noticed, and nothing
half-written or broken changes a running cluster."""

import os
import signal
import time

import cklib
from cklib import DaemonTest, spec, wait_for


class WatchTest(DaemonTest):

    def start(self, **kw):
        d = self.daemon(**kw)
        d.start()
        return d

    def test_atomic_rename_creates_and_updates(self):
        d = self.start()
        d.write("a.yaml", spec("alpha", extra="cluster_size: 3"))
        st = d.wait_status("alpha", phase="available")
        self.assertEqual(st["endpoints"]["nodes"], 3)
        d.write("a.yaml", spec("alpha", extra="cluster_size: 5"))
        wait_for(lambda: d.status("alpha")["endpoints"].get("nodes") == 5,
                 what="alpha scaled to 5 nodes")
        self.assertIn("test backend applies add-replicas (2 -> 4",
                      d.log())

    def test_in_place_write_is_noticed(self):
        d = self.start()
        d.write("a.yaml", spec("alpha"), atomic=False)
        d.wait_status("alpha", phase="available")
        d.write("a.yaml", spec("alpha", extra="cluster_size: 4"),
                atomic=False)
        wait_for(lambda: d.status("alpha")["endpoints"].get("nodes") == 4,
                 what="in-place edit applied")

    def test_nested_directories_and_ignored_files(self):
        d = self.start()
        d.write("prod/web/a.yaml", spec("alpha"))
        d.write("staging/b.yml", spec("beta"))
        # Editor droppings and hidden files are never read.
        for junk in ("prod/web/a.yaml~", "prod/.hidden.yaml",
                     "prod/#a.yaml#", "prod/a.yaml.swp", "prod/notes.txt"):
            with open(os.path.join(d.specs, junk), "w") as f:
                f.write("this: is: not: yaml: [")
        d.wait_status("alpha", phase="available")
        d.wait_status("beta", phase="available")
        time.sleep(0.3)
        self.assertNotIn("spec error", d.log())
        # A directory created later, with a spec inside, is watched too.
        d.write("new/deeper/c.yaml", spec("gamma"))
        d.wait_status("gamma", phase="available")

    def test_delete_retains_by_default(self):
        d = self.start()
        path = d.write("a.yaml", spec("alpha"))
        d.wait_status("alpha", phase="available")
        os.unlink(path)
        st = d.wait_status("alpha", phase="retained")
        self.assertTrue(st["deleted"])
        self.assertIn("leaves the cluster running", st["message"])
        self.assertNotIn("test backend applies delete", d.log())
        # The spec coming back resumes normal reconciling.
        d.write("a.yaml", spec("alpha"))
        d.wait_status("alpha", phase="available", deleted=False)

    def test_delete_with_policy_delete(self):
        d = self.start()
        path = d.write("a.yaml", spec("alpha",
                                      extra="deletion_policy: delete"))
        d.wait_status("alpha", phase="available")
        os.unlink(path)
        d.wait_log("test backend applies delete")
        wait_for(lambda: not os.path.exists(d.status_path("alpha")),
                 what="status file removed after deletion")
        d.wait_log("cluster alpha: deleted")

    def test_half_written_file_changes_nothing(self):
        d = self.start()
        full = spec("alpha", extra="cluster_size: 3") + "---\n" + \
            spec("beta", extra="cluster_size: 2")
        d.write("a.yaml", full)
        d.wait_status("alpha", phase="available")
        d.wait_status("beta", phase="available")
        gen = d.status("alpha")["generation"]
        # A writer that has written the first half of the new version and
        # is still writing. That half alone is valid YAML that would
        # resize alpha and drop beta: the daemon must keep the previous
        # content until the file is closed.
        path = os.path.join(d.specs, "a.yaml")
        new = full.replace("cluster_size: 3", "cluster_size: 6")
        half = new.index("---")
        f = open(path, "w")
        f.write(new[:half])
        f.flush()
        # Another change makes the daemon rescan while a.yaml is open.
        d.write("c.yaml", spec("gamma"))
        d.wait_status("gamma", phase="available")
        self.assertEqual(d.status("alpha")["generation"], gen)
        self.assertEqual(d.status("beta")["phase"], "available")
        self.assertFalse(d.status("beta")["deleted"])
        f.write(new[half:])
        f.close()
        wait_for(lambda: d.status("alpha")["endpoints"].get("nodes") == 6,
                 what="the completed file applied")
        # A writer that died half way leaves a broken file: still nothing
        # changes, and both clusters say spec-error.
        with open(path, "w") as f:
            f.write(full[:int(len(full) * 0.6)] + "\n  cluster_size: [")
        st = d.wait_status("alpha", phase="spec-error")
        self.assertTrue(st["spec_errors"])
        self.assertIn("a.yaml:", st["spec_errors"][0])
        self.assertEqual(d.status("alpha")["endpoints"]["nodes"], 6)
        self.assertFalse(d.status("beta")["deleted"])

    def test_bad_edit_keeps_last_good_spec_others_carry_on(self):
        d = self.start()
        d.write("a.yaml", spec("alpha", extra="cluster_size: 3"))
        d.write("b.yaml", spec("beta"))
        d.wait_status("alpha", phase="available")
        d.wait_status("beta", phase="available")
        d.write("a.yaml", spec("alpha", extra="cluster_size: 9"))
        st = d.wait_status("alpha", phase="spec-error")
        self.assertEqual(st["endpoints"]["nodes"], 3)
        self.assertIn("spec.cluster_size must be 1..6, got 9",
                      st["spec_errors"][0])
        self.assertRegex(st["spec_errors"][0], r"a\.yaml:7:17: ")
        d.wait_log("spec error: %s/a.yaml:7:17" % d.specs)
        # The other file still converges.
        d.write("b.yaml", spec("beta", extra="cluster_size: 4"))
        wait_for(lambda: d.status("beta")["endpoints"].get("nodes") == 4,
                 what="beta updated while alpha is broken")
        # Fixing the file clears the error and applies the new spec.
        d.write("a.yaml", spec("alpha", extra="cluster_size: 4"))
        wait_for(lambda: d.status("alpha")["phase"] == "available" and
                 d.status("alpha")["endpoints"].get("nodes") == 4,
                 what="alpha fixed")

    def test_file_error_logged_once(self):
        """A broken file is reported once, not again at every scan that
        finds it still broken, also when another file's errors change."""
        d = self.start()
        d.write("b.yaml", spec("beta"))
        d.write("bad1.yaml", "apiVersion: [\n")
        d.write("bad2.yaml", "kind: [\n")
        d.wait_log("spec error: %s/bad2.yaml:" % d.specs)
        d.wait_log("spec error: %s/bad1.yaml:" % d.specs)
        d.write("bad2.yaml", "kind: {\n\n\n")
        d.wait_log("spec error: %s/bad2.yaml:" % d.specs, count=2)
        d.write("b.yaml", spec("beta", extra="cluster_size: 2"))
        wait_for(lambda: d.status("beta")["endpoints"].get("nodes") == 2,
                 what="beta at 2 nodes")
        self.assertEqual(d.log().count("spec error: %s/bad1.yaml:" %
                                       d.specs), 1)

    def test_duplicate_name_keeps_running_definition(self):
        d = self.start()
        d.write("a.yaml", spec("alpha", extra="cluster_size: 3"))
        d.wait_status("alpha", phase="available")
        d.write("b.yaml", spec("alpha", extra="cluster_size: 5"))
        st = d.wait_status("alpha", phase="spec-error")
        errs = "\n".join(st["spec_errors"])
        self.assertIn("a.yaml:4:9: cluster 'alpha' is also defined at "
                      "%s/b.yaml:4:9" % d.specs, errs)
        self.assertIn("b.yaml:4:9: cluster 'alpha' is also defined at "
                      "%s/a.yaml:4:9" % d.specs, errs)
        self.assertTrue(st["spec_file"].endswith("/a.yaml"))
        time.sleep(0.3)
        self.assertEqual(d.status("alpha")["endpoints"]["nodes"], 3)
        os.unlink(os.path.join(d.specs, "b.yaml"))
        d.wait_status("alpha", phase="available")

    def test_git_sync_symlink_swap(self):
        # git-sync: clusters_dir is a symlink that is atomically replaced.
        root = os.path.join(self.tmp, "repo")
        rev1 = os.path.join(root, "rev1")
        rev2 = os.path.join(root, "rev2")
        os.makedirs(rev1)
        os.makedirs(rev2)
        with open(os.path.join(rev1, "a.yaml"), "w") as f:
            f.write(spec("alpha", extra="cluster_size: 2"))
        with open(os.path.join(rev2, "a.yaml"), "w") as f:
            f.write(spec("alpha", extra="cluster_size: 4"))
        with open(os.path.join(rev2, "b.yaml"), "w") as f:
            f.write(spec("beta"))
        link = os.path.join(root, "current")
        os.symlink("rev1", link)
        conf = "clusters_dir: %s\nstate_dir: %s/state\n" % (link, self.tmp)
        d = self.start(config=conf)
        d.wait_status("alpha", phase="available")
        tmp_link = os.path.join(root, ".current.tmp")
        os.symlink("rev2", tmp_link)
        os.rename(tmp_link, link)
        wait_for(lambda: d.status("alpha")["endpoints"].get("nodes") == 4,
                 timeout=3, what="new revision picked up")
        d.wait_status("beta", phase="available")

    def test_kubernetes_style_data_swap(self):
        # Kubernetes volumes: a.yaml -> ..data/a.yaml, ..data -> ..rev.
        os.makedirs(os.path.join(self.tmp, "specs", "..rev1"))
        os.makedirs(os.path.join(self.tmp, "specs", "..rev2"))
        base = os.path.join(self.tmp, "specs")
        with open(os.path.join(base, "..rev1", "a.yaml"), "w") as f:
            f.write(spec("alpha", extra="cluster_size: 2"))
        with open(os.path.join(base, "..rev2", "a.yaml"), "w") as f:
            f.write(spec("alpha", extra="cluster_size: 5"))
        os.symlink("..rev1", os.path.join(base, "..data"))
        os.symlink("..data/a.yaml", os.path.join(base, "a.yaml"))
        d = self.start()
        d.wait_status("alpha", phase="available")
        os.symlink("..rev2", os.path.join(base, "..data_tmp"))
        os.rename(os.path.join(base, "..data_tmp"),
                  os.path.join(base, "..data"))
        wait_for(lambda: d.status("alpha")["endpoints"].get("nodes") == 5,
                 timeout=3, what="swapped ..data picked up")

    def test_queue_overflow_triggers_full_rescan(self):
        d = self.start()
        d.write("a.yaml", spec("alpha"))
        d.wait_status("alpha", phase="available")
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            max_events = int(f.read())
        if max_events > 200000:
            self.skipTest("max_queued_events is %d, too many events to "
                          "overflow in a test" % max_events)
        d.send(signal.SIGSTOP)
        try:
            junk = os.path.join(d.specs, "junk.txt")
            for i in range(max_events // 2 + 100):
                with open(junk, "w"):
                    pass                    # create+open+close: >2 events
            d.write("b.yaml", spec("beta"))
        finally:
            d.send(signal.SIGCONT)
        d.wait_log("inotify queue overflowed, rescanning everything")
        d.wait_status("beta", phase="available")

    def test_resync_timer_rescans_without_events(self):
        d = self.daemon()
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 1s\n"
                    % (d.specs, d.state))
        d.start()
        d.wait_log("loaded 0 files")
        d.wait_log("rescan (resync): nothing changed", timeout=3)


if __name__ == "__main__":
    cklib.main()
