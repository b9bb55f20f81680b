#!/usr/bin/python3
"""The elasticache backend end to end: the real cachekeeperd against the
ElastiCache API emulator (tests/emulator), which verifies every request's
SigV4 signature with botocore and moves groups through AWS's asynchronous
states. The emulator is started per test on a port it picks and stopped by
its pid, also on failure."""

import os
import subprocess
import sys
import time

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(cklib.SRCDIR, "tests", "emulator"))
from ec_client import Emulator, EMULATOR, PYTHON  # noqa: E402,F401
AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def have_botocore():
    return subprocess.call([PYTHON, "-c", "import botocore"],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


class ElastiCacheTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not have_botocore():
            self.skipTest("Debian's python3-botocore is not installed "
                          "(scripts/install-deps installs it)")
        self.emu = Emulator()
        self.addCleanup(self.emu.stop)

    def start(self, env=None, creds=True, extra_conf=""):
        e = {"AWS_EC2_METADATA_DISABLED": "true",
             "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
             "AWS_CONFIG_FILE": "/nonexistent"}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN",
                  "AWS_WEB_IDENTITY_TOKEN_FILE"):
            e[k] = ""
        if creds:
            e.update({"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK})
        e.update(env or {})
        d = self.daemon(binary=DAEMON, env=e)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 2s\n"
                    "default_backend: elasticache\n"
                    "elasticache:\n  endpoint: %s\n  region: us-east-1\n"
                    "  poll_interval: 200ms\n%s"
                    % (d.specs, d.state, self.emu.url, extra_conf))
        d.start()
        self.d = d
        return d

    def group_spec(self, name="web", extra="cluster_size: 2\n"):
        return spec(name, backend="elasticache", extra=extra)

    def edit(self, text, name="web"):
        """Replace a running cluster's spec; wait until the daemon has it."""
        old = self.d.status(name)["generation"]
        self.d.write(name + ".yaml", text)
        wait_for(lambda: self.d.status(name)["generation"] != old, 10,
                 what="new generation of %s" % name)

    def wait_synced(self, name="web", timeout=30, **want):
        d = self.d

        def ok():
            st = d.status(name)
            if not st or st["phase"] != "available":
                return None
            if st["observed_generation"] != st["generation"]:
                return None
            if st["plan"]["steps"]:
                return None
            for k, v in want.items():
                if st.get(k) != v:
                    return None
            return st
        d.alive()
        return wait_for(ok, timeout, what="%s available and in sync" % name)

    def test_create_cluster_mode_disabled(self):
        d = self.start()
        d.write("web.yaml", self.group_spec(extra="""
            cluster_size: 3
            instance_type: cache.t4g.small
            engine_version: "7.1"
            snapshot_window: "05:00-06:00"
            snapshot_retention_limit: 3
            maintenance_window: "sun:07:00-sun:08:00"
            tags: {team: web}
        """))
        st = self.wait_synced()
        g = self.emu.group("web")
        self.assertEqual(g["Status"], "available")
        self.assertEqual(len(g["MemberClusters"]), 3)
        self.assertEqual(g["CacheNodeType"], "cache.t4g.small")
        self.assertEqual(g["SnapshotWindow"], "05:00-06:00")
        self.assertEqual(g["SnapshotRetentionLimit"], 3)
        self.assertEqual(g["AutomaticFailover"], "enabled")
        ep = st["endpoints"]
        self.assertIn("primary", ep)
        self.assertEqual(len(ep["node_groups"][0]["members"]), 3)
        self.assertEqual(self.emu.calls().get("CreateReplicationGroup"), 1)
        # In sync: the next resyncs make no mutating call.
        before = self.emu.calls()
        time.sleep(4.5)
        after = self.emu.calls()
        for a in ("CreateReplicationGroup", "ModifyReplicationGroup",
                  "IncreaseReplicaCount", "DecreaseReplicaCount"):
            self.assertEqual(before.get(a), after.get(a), a)


    def no_busy_errors(self):
        """The state gate held: AWS never had to refuse a call."""
        errs = self.emu.calls("error")
        self.assertFalse([a for a in errs if a not in (
            "DescribeReplicationGroups",)], errs)
        for r in self.emu.requests("ModifyReplicationGroup") + \
                self.emu.requests("IncreaseReplicaCount") + \
                self.emu.requests("DecreaseReplicaCount") + \
                self.emu.requests("ModifyReplicationGroupShardConfiguration"):
            self.assertNotEqual(r.get("code"),
                                "InvalidReplicationGroupState", r)

    def test_cluster_mode_enabled_reshard_both_ways(self):
        d = self.start()
        cm = """
            cluster_mode:
              enabled: true
              num_node_groups: %d
              replicas_per_node_group: %d
        """
        d.write("web.yaml", self.group_spec(extra=cm % (2, 1)))
        st = self.wait_synced()
        g = self.emu.group("web")
        self.assertTrue(g["ClusterEnabled"])
        self.assertEqual(len(g["NodeGroups"]), 2)
        self.assertIn("configuration", st["endpoints"])
        self.assertEqual(len(st["endpoints"]["node_groups"]), 2)
        self.edit(self.group_spec(extra=cm % (3, 1)))
        self.wait_synced(timeout=40)
        self.assertEqual(len(self.emu.group("web")["NodeGroups"]), 3)
        self.edit(self.group_spec(extra=cm % (1, 2)))
        self.wait_synced(timeout=40)
        g = self.emu.group("web")
        self.assertEqual(len(g["NodeGroups"]), 1)
        self.assertEqual(len(g["NodeGroups"][0]["NodeGroupMembers"]), 3)
        # Shards are removed by their real IDs; replicas added after.
        reqs = self.emu.requests("ModifyReplicationGroupShardConfiguration")
        removal = [r["params"] for r in reqs
                   if r["params"].get("NodeGroupCount") == "1"]
        self.assertTrue(removal, reqs)
        self.assertEqual(sorted(v for k, v in removal[0].items()
                                if k.startswith("NodeGroupsToRemove.")),
                         ["0002", "0003"])
        self.no_busy_errors()

    def test_replicas_up_and_down(self):
        d = self.start()
        d.write("web.yaml", self.group_spec(extra="cluster_size: 2\n"))
        self.wait_synced()
        self.edit(self.group_spec(extra="cluster_size: 4\n"))
        self.wait_synced()
        self.assertEqual(len(self.emu.group("web")["MemberClusters"]), 4)
        # Down to a primary alone: automatic failover must go first.
        self.edit(self.group_spec(
            extra="cluster_size: 1\nenable_automatic_failover: false\n"))
        self.wait_synced(timeout=40)
        g = self.emu.group("web")
        self.assertEqual(len(g["MemberClusters"]), 1)
        self.assertEqual(g["AutomaticFailover"], "disabled")
        order = [r["action"] for r in self.emu.control("requests")[
            "requests"] if r["action"] in ("ModifyReplicationGroup",
                                           "DecreaseReplicaCount")]
        self.assertEqual(order[:2], ["ModifyReplicationGroup",
                                     "DecreaseReplicaCount"], order)
        self.no_busy_errors()

    def test_many_settings_in_one_edit_are_sequenced(self):
        d = self.start()
        d.write("web.yaml", self.group_spec(extra="cluster_size: 1\n"
                                            "enable_automatic_failover: "
                                            "false\n"))
        self.wait_synced()
        self.edit(self.group_spec(extra="""
            cluster_size: 3
            instance_type: cache.m6g.large
            enable_automatic_failover: true
            enable_multi_az: true
            snapshot_window: "02:00-03:00"
            snapshot_retention_limit: 10
            maintenance_window: "wed:04:00-wed:05:00"
            apply_immediately: true
        """))
        st = self.wait_synced(timeout=40)
        g = self.emu.group("web")
        self.assertEqual(len(g["MemberClusters"]), 3)
        self.assertEqual(g["CacheNodeType"], "cache.m6g.large")
        self.assertEqual(g["AutomaticFailover"], "enabled")
        self.assertEqual(g["MultiAZ"], "enabled")
        self.assertEqual(g["SnapshotWindow"], "02:00-03:00")
        self.assertEqual(g["SnapshotRetentionLimit"], 10)
        # Replicas first, then one combined modification.
        order = [r["action"] for r in self.emu.control("requests")[
            "requests"] if r["action"] in ("ModifyReplicationGroup",
                                           "IncreaseReplicaCount")]
        self.assertEqual(order, ["IncreaseReplicaCount",
                                 "ModifyReplicationGroup"])
        self.no_busy_errors()
        self.assertEqual(st["message"], "in sync")

    def test_pending_until_maintenance_window(self):
        d = self.start()
        d.write("web.yaml", self.group_spec())
        self.wait_synced()
        self.edit(self.group_spec(
            extra="cluster_size: 2\ninstance_type: cache.r6g.large\n"))
        st = wait_for(lambda: "pending until the maintenance window" in
                      (self.d.status("web")["message"] or "") and
                      self.d.status("web"), 20, what="pending message")
        self.assertIn("cache.r6g.large", st["message"])
        time.sleep(4.5)       # two resyncs: not requested again
        mods = self.emu.requests("ModifyReplicationGroup")
        self.assertEqual(len(mods), 1)
        self.assertEqual(mods[0]["params"]["ApplyImmediately"], "false")
        self.emu.control("maintenance", {"replication_group_id": "web"})
        wait_for(lambda: self.emu.group("web")["CacheNodeType"] ==
                 "cache.r6g.large", 20, what="maintenance applied")
        st = self.wait_synced(message="in sync")
        self.assertEqual(len(self.emu.requests("ModifyReplicationGroup")), 1)

    def test_reverted_change_is_terminal(self):
        d = self.start()
        d.write("web.yaml", self.group_spec())
        self.wait_synced()
        self.emu.control("config", {"revert_next_modify": 1})
        self.edit(self.group_spec(
            extra="cluster_size: 2\ninstance_type: cache.r6g.xlarge\n"
                  "apply_immediately: true\n"))
        st = d.wait_status("web", phase="failed", timeout=30)
        self.assertIn("AWS reverted instance_type cache.r6g.xlarge",
                      st["last_error"])
        self.assertIn("insufficient capacity", st["last_error"])
        n = len(self.emu.requests("ModifyReplicationGroup"))
        self.assertEqual(n, 1)
        time.sleep(4.5)       # no loop
        self.assertEqual(len(self.emu.requests("ModifyReplicationGroup")), 1)
        # A new spec is tried again.
        self.edit(self.group_spec(
            extra="cluster_size: 2\ninstance_type: cache.r6g.2xlarge\n"
                  "apply_immediately: true\n"))
        self.wait_synced(timeout=30)
        self.assertEqual(self.emu.group("web")["CacheNodeType"],
                         "cache.r6g.2xlarge")

    def test_terminal_error_stops_until_spec_changes(self):
        d = self.start()
        self.emu.control("faults", {
            "action": "CreateReplicationGroup", "type": "error",
            "status": 400, "code": "InsufficientCacheClusterCapacity",
            "message": "cache.t4g.small capacity is not available", "count": 1})
        d.write("web.yaml", self.group_spec())
        st = d.wait_status("web", phase="failed", timeout=20)
        self.assertIn("InsufficientCacheClusterCapacity", st["last_error"])
        time.sleep(4.5)
        self.assertEqual(self.emu.calls("received").get(
            "CreateReplicationGroup"), 1)
        self.edit(self.group_spec(extra="cluster_size: 2\n"
                                            "tags: {retry: '1'}\n"))
        self.wait_synced()
        self.assertEqual(self.emu.calls().get("CreateReplicationGroup"), 1)

    def test_adopts_an_existing_group(self):
        d = self.start()
        d.write("web.yaml", self.group_spec())
        self.wait_synced()
        d.stop()
        os.unlink(os.path.join(d.specs, "web.yaml"))
        # The daemon starts again knowing nothing, and its first describe
        # does not see the group (an eventually consistent answer): its
        # create gets AlreadyExists and it adopts the group.
        self.emu.control("faults", {
            "action": "DescribeReplicationGroups", "type": "error",
            "status": 404, "code": "ReplicationGroupNotFoundFault",
            "message": "ReplicationGroup web not found.", "count": 1})
        d.write("web.yaml", self.group_spec(extra="cluster_size: 3\n"))
        d.start()
        d.wait_log("exists already: adopting it", timeout=20)
        wait_for(lambda: len(self.emu.group("web")["MemberClusters"]) == 3,
                 30, what="adopted group scaled")
        self.wait_synced(timeout=30)
        self.assertEqual(len(self.emu.group("web")["MemberClusters"]), 3)
        self.assertEqual(self.emu.calls().get("CreateReplicationGroup"), 1)

    def test_delete_retain_and_delete_with_final_snapshot(self):
        d = self.start()
        d.write("keep.yaml", self.group_spec("keep"))
        d.write("web.yaml", self.group_spec(extra="cluster_size: 2\n"
                                            "deletion_policy: delete\n"
                                            "final_snapshot: true\n"))
        self.wait_synced("keep")
        self.wait_synced("web")
        # One at a time: two of two at once is what the mass-deletion
        # guard holds (tests/integration/test_daemon.py).
        os.unlink(os.path.join(d.specs, "web.yaml"))
        wait_for(lambda: self.emu.group("web") is None, 30,
                 what="web deleted")
        os.unlink(os.path.join(d.specs, "keep.yaml"))
        d.wait_status("keep", phase="retained", timeout=10)
        self.assertEqual(self.emu.group("keep")["Status"], "available")
        req = self.emu.requests("DeleteReplicationGroup")
        self.assertEqual(len(req), 1)
        snap = req[0]["params"]["FinalSnapshotIdentifier"]
        self.assertRegex(snap, r"^web-final-\d{14}$")
        wait_for(lambda: not os.path.exists(d.status_path("web")), 10,
                 what="web retired")

    def test_throttling_storm_and_5xx_still_converge(self):
        d = self.start()
        # Half the calls throttled, 40 in all. Drawn from a fixed seed
        # whose draws never throttle more than 3 in a row: an unseeded
        # storm once throttled one call 8 times running, and the backoff
        # (up to 15 s a retry) outlasted the wait.
        self.emu.control("faults", {"action": "*", "type": "throttle",
                                    "probability": 0.5, "count": 40,
                                    "seed": 20261226})
        self.emu.control("faults", {"action": "*", "type": "unavailable",
                                    "count": 3, "skip": 2})
        # The create goes through but its answer is lost: the retry must
        # not create a second group.
        self.emu.control("faults", {"action": "CreateReplicationGroup",
                                    "type": "drop", "execute": True,
                                    "count": 1})
        d.write("web.yaml", self.group_spec(extra="cluster_size: 3\n"))
        self.wait_synced(timeout=90)
        self.assertEqual(self.emu.calls().get("CreateReplicationGroup"), 1)
        self.assertEqual(len(self.emu.control("state")[
            "replication_groups"]), 1)
        inj = self.emu.calls("injected")
        self.assertTrue(inj, inj)

    def test_credentials_from_instance_metadata(self):
        d = self.start(creds=False, env={
            "AWS_EC2_METADATA_DISABLED": "",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.emu.url})
        d.write("web.yaml", self.group_spec())
        self.wait_synced()
        self.assertEqual(self.emu.calls().get("CreateReplicationGroup"), 1)
        log = d.log()
        self.assertIn("credentials from instance metadata", log)

    def test_instance_credentials_are_refreshed_before_they_expire(self):
        # Credentials for 10 s: the daemon fetches new ones before they
        # expire, and no call fails with an expired token meanwhile.
        self.emu.control("imds", {"expiry_seconds": 10})
        d = self.start(creds=False, env={
            "AWS_EC2_METADATA_DISABLED": "",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.emu.url},
            extra_conf="")
        d.write("web.yaml", self.group_spec())
        self.wait_synced()
        first = self.emu.control("imds")["current"]["AccessKeyId"]
        wait_for(lambda: self.emu.control("imds")["current"]["AccessKeyId"]
                 != first, 20, what="new instance credentials")
        time.sleep(3)
        errors = self.emu.calls("error")
        self.assertFalse({k: v for k, v in errors.items()
                          if k != "DescribeReplicationGroups"}, errors)
        for r in self.emu.control("requests")["requests"]:
            self.assertNotIn(r.get("code"), ("ExpiredToken",
                                              "InvalidClientTokenId"), r)
        self.assertGreaterEqual(d.log().count("credentials from instance "
                                              "metadata"), 2)
        st = self.d.status("web")
        self.assertIsNone(st["last_error"])

    def test_credentials_from_web_identity(self):
        tok = os.path.join(self.tmp, "token")
        with open(tok, "w") as f:
            f.write("eyJhbGciOiJSUzI1NiJ9.test-token.sig\n")
        self.emu.control("sts", {"expected_token":
                                 "eyJhbGciOiJSUzI1NiJ9.test-token.sig"})
        d = self.start(creds=False, env={
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/cachekeeper",
            "AWS_WEB_IDENTITY_TOKEN_FILE": tok,
            "AWS_ENDPOINT_URL_STS": self.emu.url})
        d.write("web.yaml", self.group_spec())
        self.wait_synced()
        self.assertIn("credentials from web identity", d.log())
        self.assertNotIn("test-token", d.log())


    def test_failover_drill_once_per_window(self):
        days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

        def at(t):
            g = time.gmtime(t)
            return "%s:%02d:%02d" % (days[(g.tm_wday + 1) % 7], g.tm_hour,
                                     g.tm_min)
        now = time.time()
        window = "%s-%s" % (at(now - 300), at(now + 3900))
        d = self.start()
        d.write("web.yaml", self.group_spec(extra="""
            cluster_mode: {enabled: true, num_node_groups: 2,
                           replicas_per_node_group: 1}
            maintenance_window: "%s"
            failover_drill: {window: "%s"}
        """ % (at(now + 3 * 86400) + "-" + at(now + 3 * 86400 + 3600),
               window)))
        st = wait_for(lambda: len(self.d.status("web")["endpoints"].get(
            "failover_drill", {}).get("results", [])) == 2 and
            self.d.status("web"), 60, what="two drills recorded")
        drill = st["endpoints"]["failover_drill"]
        self.assertEqual(sorted(drill["drilled"]), ["0001", "0002"])
        for r in drill["results"]:
            self.assertEqual(r["result"], "completed")
            self.assertTrue(r["duration_from_events"])
            self.assertGreater(r["duration_s"], 0)
        calls = self.emu.requests("TestFailover")
        self.assertEqual([c["params"]["NodeGroupId"] for c in calls],
                         ["0001", "0002"])
        # One node group at a time: the second only after the first was
        # back to available.
        self.assertGreater(calls[1]["time"] - calls[0]["time"], 0.2)
        # Once per window, also across a daemon restart.
        d.stop()
        d.start()
        self.wait_synced()
        time.sleep(4.5)
        self.assertEqual(len(self.emu.requests("TestFailover")), 2)
        self.no_busy_errors()


    def test_tags_security_groups_and_topic_converge(self):
        d = self.start()
        base = """
            cluster_size: 2
            tags: {%s}
            elasticache:
              security_group_ids: [%s]
              %s
        """
        d.write("web.yaml", self.group_spec(extra=base % (
            "team: web", "sg-0aaa", "")))
        self.wait_synced()
        self.edit(self.group_spec(extra=base % (
            "team: payments, env: prod", "sg-0aaa, sg-0bbb",
            "notification_topic_arn: arn:aws:sns:us-east-1:"
            "123456789012:cache-events")))
        self.wait_synced()
        tags = self.emu.requests("AddTagsToResource")
        self.assertEqual(len(tags), 1)
        p = tags[0]["params"]
        got = {p["Tags.Tag.%d.Key" % i]: p["Tags.Tag.%d.Value" % i]
               for i in (1, 2)}
        self.assertEqual(got, {"team": "payments", "env": "prod"})
        mods = self.emu.requests("ModifyReplicationGroup")
        self.assertEqual(len(mods), 1)
        self.assertEqual(sorted(v for k, v in mods[0]["params"].items()
                                if k.startswith("SecurityGroupIds.")),
                         ["sg-0aaa", "sg-0bbb"])
        self.assertEqual(mods[0]["params"]["NotificationTopicArn"],
                         "arn:aws:sns:us-east-1:123456789012:cache-events")
        # Converged: later resyncs change nothing.
        time.sleep(4.5)
        self.assertEqual(len(self.emu.requests("AddTagsToResource")), 1)
        self.assertEqual(len(self.emu.requests("ModifyReplicationGroup")),
                         1)
        self.no_busy_errors()

    def test_engine_downgrade_is_never_applied(self):
        d = self.start()
        d.write("web.yaml", self.group_spec(extra='engine_version: "7.1"\n'))
        self.wait_synced()
        self.edit(self.group_spec(extra='engine_version: "6.2"\n'
                                  'apply_immediately: true\n'))
        st = wait_for(lambda: self.d.status("web")["plan"]["steps"] and
                      self.d.status("web"), 10, what="plan")
        self.assertEqual(st["plan"]["steps"][0]["action"],
                         "needs-replacement")
        self.assertIn("need a new cluster", st["message"])
        time.sleep(2.5)
        self.assertEqual(self.emu.requests("ModifyReplicationGroup"), [])


    def test_auth_token_rotate_then_set(self):
        import hashlib
        a, b = "tokenAAAAAAAAAAAAAAAAAAAA", "tokenBBBBBBBBBBBBBBBBBBBB"
        sha = lambda t: hashlib.sha256(t.encode()).hexdigest()
        tok = os.path.join(self.tmp, "web.token")
        with open(os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(a + "\n")
        body = """
            cluster_size: 2
            enable_transit_encryption: true
            auth_token_file: %s
            apply_immediately: %s
        """
        d = self.start()
        d.write("web.yaml", self.group_spec(extra=body % (tok, "false")))
        self.wait_synced()
        tokens = lambda: self.emu.control("state")["auth_tokens"]["web"]
        self.assertEqual(tokens(), [sha(a)])
        # A new token in the file: ROTATE, both work until the window.
        with open(tok + ".new", "w") as f:
            f.write(b + "\n")
        os.chmod(tok + ".new", 0o600)
        os.rename(tok + ".new", tok)
        wait_for(lambda: tokens() == [sha(a), sha(b)], 20,
                 what="rotated")
        st = wait_for(lambda: "AUTH token rotated" in (
            self.d.status("web")["message"] or "") and self.d.status("web"),
            20, what="rotation reported")
        time.sleep(2.5)
        self.assertEqual(tokens(), [sha(a), sha(b)])
        # apply_immediately: the old token is retired now (SET).
        self.edit(self.group_spec(extra=body % (tok, "true")))
        wait_for(lambda: tokens() == [sha(b)], 20, what="set")
        self.wait_synced()
        strategies = [r["params"]["AuthTokenUpdateStrategy"] for r in
                      self.emu.requests("ModifyReplicationGroup")]
        self.assertEqual(strategies, ["ROTATE", "SET"])
        # The tokens never reach the log, the status or the state dir.
        seen = d.log()
        for root, _, files in os.walk(d.state):
            for n in files:
                with open(os.path.join(root, n), errors="replace") as f:
                    seen += f.read()
        for t in (a, b):
            self.assertNotIn(t, seen)


if __name__ == "__main__":
    cklib.main()
