#!/usr/bin/python3
"""Checks the ElastiCache emulator against Debian's real AWS CLI.

Starts tests/emulator/elasticache_emulator.py as a child process (stopped
by pid at the end, also on failure), then drives it with
`/usr/bin/aws --endpoint-url http://127.0.0.1:PORT --region us-east-1
elasticache ...` and asserts that the CLI parses every response (exit 0,
JSON with the expected fields and asynchronous statuses), that a wrong
secret gives SignatureDoesNotMatch, that injected throttling / 503 /
dropped connections are retried by the CLI and surface as errors with
retries disabled, and that the CLI can sign with credentials vended by
the emulator's IMDSv2 and STS endpoints.

Bulk set-up (more than 100 groups, for pagination) goes through a small
SigV4 signer written here with hashlib/hmac, independent of botocore, so
the emulator's verification is also checked against a second signer.

Stdlib unittest only.  Prints "N passed, N failed, N skipped" last.
Exit status: 0 all passed, 1 some failed, 77 skipped (the aws binary is
missing and cannot be installed).
"""

import atexit
import datetime
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ec_client import Emulator, EMULATOR, PYTHON  # noqa: E402,F401
AWS = "/usr/bin/aws"
AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
ACCOUNT = "123456789012"

EMU = None
TMP = None


def have_tools():
    if not os.path.exists(AWS):
        return False
    r = subprocess.run([PYTHON, "-c", "import botocore"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def ensure_tools():
    """Install Debian's awscli/python3-botocore if missing.

    Returns None when usable, else the reason for skipping.
    """
    if have_tools():
        return None
    if not os.path.exists(PYTHON):
        return "%s is not there" % PYTHON
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return ("%s or Debian's python3-botocore is missing and this test "
                "is not root with apt-get to install them" % AWS)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq",
                    "--no-install-recommends", "awscli", "python3-botocore"],
                   env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    if have_tools():
        return None
    return "apt-get could not install awscli and python3-botocore"


# ------------------------------------------------- independent SigV4 signer

def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_query(url, params, access_key=AK, secret_key=SK, region=REGION,
                 token=None):
    """POST a signed Query API request; returns (status, body text)."""
    body = urllib.parse.urlencode(sorted(params.items())).encode()
    host = urllib.parse.urlsplit(url).netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"content-type": "application/x-www-form-urlencoded; "
                               "charset=utf-8",
               "host": host, "x-amz-date": amz_date}
    if token:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join([
        "POST", "/", "",
        "".join("%s:%s\n" % (n, headers[n].strip()) for n in names),
        ";".join(names), hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/elasticache/aws4_request" % (day, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, "elasticache", "aws4_request"):
        key = _hmac(key, part)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
        % (access_key, scope, ";".join(names), sig))
    req = urllib.request.Request(url + "/", data=body, method="POST",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ------------------------------------------------- the CLI

def cli_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": AK,
        "AWS_SECRET_ACCESS_KEY": SK,
        "AWS_CONFIG_FILE": os.path.join(TMP, "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(TMP, "credentials"),
        "AWS_PAGER": "",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": TMP,
    })
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class CliResult:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout.decode()
        self.err = proc.stderr.decode()
        try:
            self.json = json.loads(self.out) if self.out.strip() else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "rc=%s stdout=%s stderr=%s" % (self.rc, self.out[:2000],
                                              self.err[:2000])


def aws(*args, env=None):
    cmd = [AWS, "--endpoint-url", EMU.url, "--region", REGION,
           "--output", "json", "elasticache"] + [str(a) for a in args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env or cli_env(),
                          timeout=120)
    return CliResult(proc)


def arn(kind, name):
    return "arn:aws:elasticache:%s:%s:%s:%s" % (REGION, ACCOUNT, kind, name)


def setUpModule():
    global EMU, TMP
    TMP = tempfile.mkdtemp(prefix="ecemu-cli-")
    for name in ("config", "credentials"):
        open(os.path.join(TMP, name), "w").close()
    EMU = Emulator()
    # also stopped if this process dies without tearDownModule
    atexit.register(EMU.stop)


def tearDownModule():
    if EMU is not None:
        EMU.stop()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


class Base(unittest.TestCase):
    def setUp(self):
        EMU.control("reset", {"config": True})
        EMU.control("config", {"delay_ms": 200})

    def ok(self, r):
        self.assertEqual(r.rc, 0, r)
        self.assertIsNotNone(r.json, r)
        return r.json

    def fails(self, r, code):
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("(%s)" % code, r.err, r)
        return r

    def hold(self, *actions):
        EMU.control("config", {"delays": {a: -1 for a in actions}})

    def create(self, rg_id, *args):
        j = self.ok(aws("create-replication-group",
                        "--replication-group-id", rg_id,
                        "--replication-group-description", "test " + rg_id,
                        *args))
        return j["ReplicationGroup"]


class CreateDescribe(Base):
    def test_cluster_mode_disabled(self):
        rg = self.create("cmd-off", "--num-cache-clusters", 3,
                         "--automatic-failover-enabled",
                         "--multi-az-enabled",
                         "--cache-node-type", "cache.r6g.large",
                         "--engine", "redis", "--engine-version", "7.0",
                         "--security-group-ids", "sg-0abc", "sg-0def",
                         "--preferred-maintenance-window",
                         "sun:23:00-mon:01:30",
                         "--snapshot-window", "05:00-09:00",
                         "--snapshot-retention-limit", 5,
                         "--tags", "Key=team,Value=cache")
        self.assertEqual(rg["Status"], "creating")
        self.assertFalse(rg["ClusterEnabled"])
        self.assertEqual(rg["MemberClusters"],
                         ["cmd-off-001", "cmd-off-002", "cmd-off-003"])
        self.assertEqual(rg["NodeGroups"][0]["NodeGroupId"], "0001")
        self.assertEqual(rg["AutomaticFailover"], "enabled")
        self.assertEqual(rg["MultiAZ"], "enabled")
        self.assertNotIn("ConfigurationEndpoint", rg)
        self.assertEqual(EMU.control("calls")["received"]
                         ["CreateReplicationGroup"], 1)
        EMU.wait_status("cmd-off", "available")
        j = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "cmd-off"))
        g = j["ReplicationGroups"][0]
        self.assertEqual(g["Status"], "available")
        ng = g["NodeGroups"][0]
        self.assertEqual(ng["Status"], "available")
        self.assertTrue(ng["PrimaryEndpoint"]["Address"].startswith(
            "cmd-off."))
        self.assertEqual(ng["PrimaryEndpoint"]["Port"], 6379)
        self.assertIn("ReaderEndpoint", ng)
        roles = [m["CurrentRole"] for m in ng["NodeGroupMembers"]]
        self.assertEqual(roles, ["primary", "replica", "replica"])
        self.assertEqual(g["SnapshotRetentionLimit"], 5)
        self.assertEqual(g["SnapshotWindow"], "05:00-09:00")
        self.assertEqual(g["CacheNodeType"], "cache.r6g.large")
        self.assertEqual(g["ARN"], arn("replicationgroup", "cmd-off"))
        self.assertIn("ReplicationGroupCreateTime", g)

        j = self.ok(aws("describe-cache-clusters", "--cache-cluster-id",
                        "cmd-off-002", "--show-cache-node-info"))
        c = j["CacheClusters"][0]
        self.assertEqual(c["ReplicationGroupId"], "cmd-off")
        self.assertEqual(c["CacheClusterStatus"], "available")
        self.assertEqual(c["EngineVersion"], "7.0")
        self.assertEqual(c["CacheParameterGroup"]["CacheParameterGroupName"],
                         "default.redis7")
        self.assertEqual(c["PreferredMaintenanceWindow"],
                         "sun:23:00-mon:01:30")
        self.assertEqual([s["SecurityGroupId"] for s in c["SecurityGroups"]],
                         ["sg-0abc", "sg-0def"])
        self.assertEqual(c["CacheNodes"][0]["CacheNodeId"], "0001")
        self.assertIn("Endpoint", c["CacheNodes"][0])

    def test_cluster_mode_enabled(self):
        rg = self.create("cme", "--num-node-groups", 3,
                         "--replicas-per-node-group", 2,
                         "--cache-parameter-group-name",
                         "default.redis7.cluster.on")
        self.assertTrue(rg["ClusterEnabled"])
        self.assertEqual(len(rg["MemberClusters"]), 9)
        self.assertIn("cme-0002-003", rg["MemberClusters"])
        self.assertEqual([n["NodeGroupId"] for n in rg["NodeGroups"]],
                         ["0001", "0002", "0003"])
        self.assertEqual([n["Slots"] for n in rg["NodeGroups"]],
                         ["0-5461", "5462-10922", "10923-16383"])
        self.assertEqual(rg["AutomaticFailover"], "enabled")
        EMU.wait_status("cme", "available")
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "cme"))[
            "ReplicationGroups"][0]
        self.assertIn("clustercfg", g["ConfigurationEndpoint"]["Address"])
        self.assertNotIn("PrimaryEndpoint", g["NodeGroups"][0])

    def test_node_group_configuration(self):
        rg = self.create(
            "ngc", "--cache-parameter-group-name",
            "default.redis7.cluster.on", "--node-group-configuration",
            "NodeGroupId=0001,Slots=0-8000,ReplicaCount=1,"
            "PrimaryAvailabilityZone=us-east-1a,"
            "ReplicaAvailabilityZones=us-east-1b",
            "NodeGroupId=0002,Slots=8001-16383,ReplicaCount=0")
        self.assertEqual([n["Slots"] for n in rg["NodeGroups"]],
                         ["0-8000", "8001-16383"])
        self.assertEqual(rg["MemberClusters"],
                         ["ngc-0001-001", "ngc-0001-002", "ngc-0002-001"])
        azs = [m["PreferredAvailabilityZone"]
               for m in rg["NodeGroups"][0]["NodeGroupMembers"]]
        self.assertEqual(azs, ["us-east-1a", "us-east-1b"])

    def test_create_errors(self):
        self.create("dup")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "dup", "--replication-group-description", "x"),
                   "ReplicationGroupAlreadyExists")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "af1", "--replication-group-description", "x",
                       "--automatic-failover-enabled"),
                   "InvalidParameterCombination")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "maz", "--replication-group-description", "x",
                       "--num-cache-clusters", 2, "--multi-az-enabled"),
                   "InvalidParameterCombination")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "win", "--replication-group-description", "x",
                       "--preferred-maintenance-window",
                       "sun:05:00-sun:05:30"), "InvalidParameterValue")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "ovl", "--replication-group-description", "x",
                       "--preferred-maintenance-window",
                       "mon:04:00-mon:06:00", "--snapshot-window",
                       "05:00-06:00"), "InvalidParameterCombination")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "ret", "--replication-group-description", "x",
                       "--snapshot-retention-limit", 36),
                   "InvalidParameterValue")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "big", "--replication-group-description", "x",
                       "--num-node-groups", 20,
                       "--replicas-per-node-group", 5),
                   "NodeQuotaForClusterExceeded")
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "bad--id", "--replication-group-description", "x"),
                   "InvalidParameterValue")
        EMU.control("config", {"cluster_quota": 2})
        self.fails(aws("create-replication-group", "--replication-group-id",
                       "quota", "--replication-group-description", "x",
                       "--num-cache-clusters", 2),
                   "ClusterQuotaForCustomerExceeded")

    def test_not_found_and_wrong_secret(self):
        r = self.fails(aws("describe-replication-groups",
                           "--replication-group-id", "nope"),
                       "ReplicationGroupNotFoundFault")
        self.assertIn("not found", r.err)
        self.fails(aws("describe-cache-clusters", "--cache-cluster-id",
                       "nope-001"), "CacheClusterNotFound")
        r = self.fails(aws("describe-replication-groups",
                           env=cli_env(AWS_SECRET_ACCESS_KEY="wrong")),
                       "SignatureDoesNotMatch")
        self.assertIn("does not match the signature you provided", r.err)
        self.fails(aws("describe-replication-groups",
                       env=cli_env(AWS_ACCESS_KEY_ID="AKIDUNKNOWN")),
                   "InvalidClientTokenId")
        self.fails(aws("describe-replication-groups",
                       env=cli_env(AWS_SESSION_TOKEN="bogus")),
                   "InvalidClientTokenId")


class RawProtocol(Base):
    """Checks below the CLI: authentication errors and the Query format."""

    def post(self, body, headers=None):
        req = urllib.request.Request(EMU.url + "/", data=body.encode(),
                                     method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def code(self, text):
        doc = ET.fromstring(text)
        ns = "{http://elasticache.amazonaws.com/doc/2015-02-02/}"
        self.assertEqual(doc.tag, ns + "ErrorResponse")
        self.assertTrue(doc.find(ns + "RequestId").text)
        return doc.find(ns + "Error/" + ns + "Code").text

    def test_auth_and_protocol_errors(self):
        q = "Action=DescribeReplicationGroups&Version=2015-02-02"
        st, body = self.post(q)
        self.assertEqual((st, self.code(body)),
                         (403, "MissingAuthenticationToken"))
        st, body = self.post(q, {"Authorization": "AWS4-HMAC-SHA256 x=y",
                                 "X-Amz-Date": "20240101T000000Z"})
        self.assertEqual((st, self.code(body)), (400, "IncompleteSignature"))
        st, body = signed_query(EMU.url, {"Action": "DescribeSnapshotz",
                                          "Version": "2015-02-02"})
        self.assertEqual((st, self.code(body)), (400, "InvalidAction"))
        st, body = signed_query(EMU.url, {"Action": "DescribeEvents",
                                          "Version": "2015-02-02",
                                          "MaxRecords": "abc"})
        self.assertEqual((st, self.code(body)), (400, "InvalidParameterValue"))
        st, body = signed_query(EMU.url, {
            "Action": "IncreaseReplicaCount", "Version": "2015-02-02",
            "ReplicationGroupId": "x", "NewReplicaCount": "1"})
        self.assertEqual((st, self.code(body)), (400, "InvalidParameterValue"))
        self.assertIn("ApplyImmediately must be provided", body)
        st, body = signed_query(EMU.url, {
            "Action": "DescribeReplicationGroups", "Version": "2015-02-02"},
            region="eu-west-1")
        self.assertEqual(st, 200, body)
        doc = ET.fromstring(body)
        self.assertTrue(doc.tag.endswith("DescribeReplicationGroupsResponse"))


class Pagination(Base):
    def test_more_than_100_groups(self):
        n = 105
        for i in range(n):
            status, body = signed_query(EMU.url, {
                "Action": "CreateReplicationGroup",
                "Version": "2015-02-02",
                "ReplicationGroupId": "pg-%03d" % i,
                "ReplicationGroupDescription": "pagination"})
            self.assertEqual(status, 200, body)
        EMU.control("advance", {})
        EMU.control("requests", method="DELETE")

        j = self.ok(aws("describe-replication-groups"))
        ids = [g["ReplicationGroupId"] for g in j["ReplicationGroups"]]
        self.assertEqual(ids, ["pg-%03d" % i for i in range(n)])
        reqs = EMU.control("requests?action=DescribeReplicationGroups")[
            "requests"]
        self.assertEqual(len(reqs), 2)  # 100 + 5, following the Marker
        self.assertNotIn("Marker", reqs[0]["params"])
        self.assertIn("Marker", reqs[1]["params"])

        j = self.ok(aws("describe-replication-groups", "--max-items", 30,
                        "--page-size", 20))
        self.assertEqual(len(j["ReplicationGroups"]), 30)
        self.assertIn("NextToken", j)
        j2 = self.ok(aws("describe-replication-groups", "--max-items", 80,
                         "--page-size", 25, "--starting-token",
                         j["NextToken"]))
        self.assertEqual(j2["ReplicationGroups"][0]["ReplicationGroupId"],
                         "pg-030")
        self.assertEqual(len(j2["ReplicationGroups"]), 75)
        self.assertNotIn("NextToken", j2)

        # ElastiCache rejects MaxRecords below 20.
        self.fails(aws("describe-replication-groups", "--page-size", 10),
                   "InvalidParameterValue")

        j = self.ok(aws("describe-cache-clusters", "--page-size", 40))
        self.assertEqual(len(j["CacheClusters"]), n)
        j = self.ok(aws("describe-events", "--source-type",
                        "replication-group", "--duration", 60))
        self.assertGreaterEqual(len(j["Events"]), 2 * n)


class Modify(Base):
    def setUp(self):
        super().setUp()
        self.create("mod", "--num-cache-clusters", 2,
                    "--cache-node-type", "cache.t3.small",
                    "--engine-version", "6.2")
        EMU.wait_status("mod", "available")

    def test_apply_immediately_and_state_gate(self):
        self.hold("ModifyReplicationGroup")
        g = self.ok(aws("modify-replication-group", "--replication-group-id",
                        "mod", "--cache-node-type", "cache.m6g.large",
                        "--snapshot-retention-limit", 7,
                        "--apply-immediately"))["ReplicationGroup"]
        self.assertEqual(g["Status"], "modifying")
        self.assertEqual(g["SnapshotRetentionLimit"], 7)
        self.assertEqual(g["CacheNodeType"], "cache.t3.small")
        c = self.ok(aws("describe-cache-clusters", "--cache-cluster-id",
                        "mod-001"))["CacheClusters"][0]
        self.assertEqual(c["CacheClusterStatus"], "modifying")
        self.assertEqual(c["PendingModifiedValues"]["CacheNodeType"],
                         "cache.m6g.large")
        # one modification at a time
        r = self.fails(aws("modify-replication-group",
                           "--replication-group-id", "mod",
                           "--snapshot-retention-limit", 3,
                           "--apply-immediately"),
                       "InvalidReplicationGroupState")
        self.assertIn("available state", r.err)
        self.fails(aws("increase-replica-count", "--replication-group-id",
                       "mod", "--new-replica-count", 2,
                       "--apply-immediately"),
                   "InvalidReplicationGroupState")
        self.fails(aws("add-tags-to-resource", "--resource-name",
                       arn("replicationgroup", "mod"), "--tags",
                       "Key=a,Value=b"), "InvalidReplicationGroupState")
        self.fails(aws("delete-replication-group", "--replication-group-id",
                       "mod"), "InvalidReplicationGroupState")
        EMU.control("advance", {"replication_group_id": "mod"})
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "mod"))[
            "ReplicationGroups"][0]
        self.assertEqual(g["Status"], "available")
        self.assertEqual(g["CacheNodeType"], "cache.m6g.large")

    def test_pending_until_maintenance(self):
        g = self.ok(aws("modify-replication-group", "--replication-group-id",
                        "mod", "--engine-version", "7.1",
                        "--no-apply-immediately"))["ReplicationGroup"]
        self.assertEqual(g["Status"], "available")
        c = self.ok(aws("describe-cache-clusters", "--cache-cluster-id",
                        "mod-002"))["CacheClusters"][0]
        self.assertEqual(c["EngineVersion"], "6.2")
        self.assertEqual(c["PendingModifiedValues"]["EngineVersion"], "7.1")
        started = EMU.control("maintenance", {"complete": True})["started"]
        self.assertEqual(started, ["mod"])
        c = self.ok(aws("describe-cache-clusters", "--cache-cluster-id",
                        "mod-002"))["CacheClusters"][0]
        self.assertEqual(c["EngineVersion"], "7.1")
        self.assertEqual(c["PendingModifiedValues"], {})
        self.assertEqual(c["CacheParameterGroup"]["CacheParameterGroupName"],
                         "default.redis7")

    def test_modify_rules(self):
        r = self.fails(aws("modify-replication-group",
                           "--replication-group-id", "mod",
                           "--apply-immediately"),
                       "InvalidParameterCombination")
        self.assertIn("No modifications were requested", r.err)
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "mod", "--engine-version", "6.0",
                       "--apply-immediately"), "InvalidParameterCombination")
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "mod", "--multi-az-enabled", "--apply-immediately"),
                   "InvalidParameterCombination")
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "mod", "--snapshot-retention-limit", 40),
                   "InvalidParameterValue")
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "mod", "--snapshot-window", "01:00-01:30"),
                   "InvalidParameterValue")
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "mod", "--auth-token", "0123456789abcdefXYZ",
                       "--auth-token-update-strategy", "ROTATE"),
                   "InvalidParameterCombination")
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "nope", "--snapshot-retention-limit", 1),
                   "ReplicationGroupNotFoundFault")
        g = self.ok(aws("modify-replication-group", "--replication-group-id",
                        "mod", "--automatic-failover-enabled",
                        "--multi-az-enabled", "--security-group-ids",
                        "sg-0123", "--notification-topic-arn",
                        "arn:aws:sns:us-east-1:123456789012:topic",
                        "--preferred-maintenance-window",
                        "tue:03:00-tue:04:00", "--apply-immediately"))[
            "ReplicationGroup"]
        self.assertEqual(g["AutomaticFailover"], "enabling")
        self.assertEqual(g["PendingModifiedValues"]
                         ["AutomaticFailoverStatus"], "enabled")
        g = EMU.wait_status("mod", "available")
        self.assertEqual(g["AutomaticFailover"], "enabled")
        self.assertEqual(g["MultiAZ"], "enabled")
        c = self.ok(aws("describe-cache-clusters", "--cache-cluster-id",
                        "mod-001"))["CacheClusters"][0]
        self.assertEqual(c["NotificationConfiguration"]["TopicArn"],
                         "arn:aws:sns:us-east-1:123456789012:topic")
        self.assertEqual(c["PreferredMaintenanceWindow"],
                         "tue:03:00-tue:04:00")
        self.assertEqual(c["SecurityGroups"][0]["SecurityGroupId"],
                         "sg-0123")
        self.fails(aws("decrease-replica-count", "--replication-group-id",
                       "mod", "--new-replica-count", 0,
                       "--apply-immediately"), "InvalidParameterValue")

    def test_auth_token(self):
        self.create("tls", "--transit-encryption-enabled", "--auth-token",
                    "first-token-0123456789")
        EMU.wait_status("tls", "available")
        self.hold("ModifyReplicationGroup")
        g = self.ok(aws("modify-replication-group", "--replication-group-id",
                        "tls", "--auth-token", "second-token-0123456789",
                        "--auth-token-update-strategy", "ROTATE",
                        "--apply-immediately"))["ReplicationGroup"]
        self.assertEqual(g["PendingModifiedValues"]["AuthTokenStatus"],
                         "ROTATING")
        EMU.control("advance", {})
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "tls"))[
            "ReplicationGroups"][0]
        self.assertTrue(g["AuthTokenEnabled"])
        self.assertIn("AuthTokenLastModifiedDate", g)
        log = EMU.control("requests?action=ModifyReplicationGroup")
        self.assertEqual(log["requests"][-1]["params"]["AuthToken"],
                         "<redacted>")


class Replicas(Base):
    def test_increase_decrease_cluster_mode_disabled(self):
        self.create("rep", "--num-cache-clusters", 1)
        EMU.wait_status("rep", "available")
        g = self.ok(aws("increase-replica-count", "--replication-group-id",
                        "rep", "--new-replica-count", 2,
                        "--apply-immediately"))["ReplicationGroup"]
        self.assertEqual(g["Status"], "modifying")
        self.assertEqual(g["MemberClusters"],
                         ["rep-001", "rep-002", "rep-003"])
        g = EMU.wait_status("rep", "available")
        self.assertEqual(len(g["NodeGroups"][0]["NodeGroupMembers"]), 3)
        self.fails(aws("increase-replica-count", "--replication-group-id",
                       "rep", "--new-replica-count", 2,
                       "--apply-immediately"), "NoOperationFault")
        self.fails(aws("increase-replica-count", "--replication-group-id",
                       "rep", "--new-replica-count", 6,
                       "--apply-immediately"), "InvalidParameterValue")
        self.fails(aws("increase-replica-count", "--replication-group-id",
                       "rep", "--new-replica-count", 3,
                       "--no-apply-immediately"), "InvalidParameterValue")
        g = self.ok(aws("decrease-replica-count", "--replication-group-id",
                        "rep", "--replicas-to-remove", "rep-002",
                        "--apply-immediately"))["ReplicationGroup"]
        self.assertEqual(g["Status"], "modifying")
        g = EMU.wait_status("rep", "available")
        self.assertEqual(g["MemberClusters"], ["rep-001", "rep-003"])

    def test_replica_configuration_cluster_mode(self):
        self.create("repc", "--num-node-groups", 2,
                    "--replicas-per-node-group", 1)
        EMU.wait_status("repc", "available")
        self.ok(aws("increase-replica-count", "--replication-group-id",
                    "repc", "--replica-configuration",
                    "NodeGroupId=0002,NewReplicaCount=3",
                    "--apply-immediately"))
        g = EMU.wait_status("repc", "available")
        sizes = [len(n["NodeGroupMembers"]) for n in g["NodeGroups"]]
        self.assertEqual(sizes, [2, 4])
        self.ok(aws("decrease-replica-count", "--replication-group-id",
                    "repc", "--new-replica-count", 0,
                    "--apply-immediately"))
        g = EMU.wait_status("repc", "available")
        self.assertEqual(g["MemberClusters"],
                         ["repc-0001-001", "repc-0002-001"])


class Reshard(Base):
    def test_scale_out_and_in(self):
        self.create("shard", "--num-node-groups", 3,
                    "--replicas-per-node-group", 1)
        EMU.wait_status("shard", "available")
        self.hold("ModifyReplicationGroupShardConfiguration")
        g = self.ok(aws("modify-replication-group-shard-configuration",
                        "--replication-group-id", "shard",
                        "--node-group-count", 4, "--apply-immediately"))[
            "ReplicationGroup"]
        self.assertEqual(g["Status"], "modifying")
        self.assertIn("SlotMigration",
                      g["PendingModifiedValues"]["Resharding"])
        self.assertEqual(g["NodeGroups"][3]["Status"], "creating")
        EMU.control("advance", {})
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "shard"))[
            "ReplicationGroups"][0]
        self.assertEqual(len(g["NodeGroups"]), 4)
        self.assertEqual(g["NodeGroups"][3]["Slots"], "12288-16383")
        self.assertEqual(g["PendingModifiedValues"], {})
        self.fails(aws("modify-replication-group-shard-configuration",
                       "--replication-group-id", "shard",
                       "--node-group-count", 2, "--apply-immediately"),
                   "InvalidParameterCombination")
        r = self.fails(aws("modify-replication-group-shard-configuration",
                           "--replication-group-id", "shard",
                           "--node-group-count", 3, "--node-groups-to-remove",
                           "0010", "--apply-immediately"),
                       "InvalidParameterValue")
        self.assertIn("[0010]", r.err)
        self.fails(aws("modify-replication-group-shard-configuration",
                       "--replication-group-id", "shard",
                       "--node-group-count", 3, "--node-groups-to-remove",
                       "0004", "--no-apply-immediately"),
                   "InvalidParameterValue")
        self.ok(aws("modify-replication-group-shard-configuration",
                    "--replication-group-id", "shard",
                    "--node-group-count", 2, "--node-groups-to-retain",
                    "0001", "0004", "--apply-immediately"))
        EMU.control("advance", {})
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "shard"))[
            "ReplicationGroups"][0]
        self.assertEqual([n["NodeGroupId"] for n in g["NodeGroups"]],
                         ["0001", "0004"])
        self.assertEqual([n["Slots"] for n in g["NodeGroups"]],
                         ["0-8191", "8192-16383"])
        self.assertEqual(len(g["MemberClusters"]), 4)

    def test_reshard_cluster_mode_disabled_rejected(self):
        self.create("flat", "--num-cache-clusters", 2)
        EMU.wait_status("flat", "available")
        self.fails(aws("modify-replication-group-shard-configuration",
                       "--replication-group-id", "flat",
                       "--node-group-count", 2, "--apply-immediately"),
                   "InvalidParameterCombination")


class TagsDeleteEventsFailover(Base):
    def test_tags(self):
        self.create("tag", "--tags", "Key=env,Value=test")
        EMU.wait_status("tag", "available")
        j = self.ok(aws("add-tags-to-resource", "--resource-name",
                        arn("replicationgroup", "tag"), "--tags",
                        "Key=owner,Value=me", "Key=env,Value=prod"))
        self.assertEqual(j["TagList"], [{"Key": "env", "Value": "prod"},
                                        {"Key": "owner", "Value": "me"}])
        j = self.ok(aws("list-tags-for-resource", "--resource-name",
                        arn("replicationgroup", "tag")))
        self.assertEqual(len(j["TagList"]), 2)
        j = self.ok(aws("list-tags-for-resource", "--resource-name",
                        arn("cluster", "tag-001")))
        self.assertEqual(len(j["TagList"]), 2)
        self.fails(aws("list-tags-for-resource", "--resource-name",
                       arn("replicationgroup", "nope")),
                   "ReplicationGroupNotFoundFault")
        self.fails(aws("list-tags-for-resource", "--resource-name",
                       "not-an-arn"), "InvalidARN")

    def test_delete_with_final_snapshot(self):
        self.create("del", "--num-cache-clusters", 2)
        EMU.wait_status("del", "available")
        self.hold("DeleteReplicationGroup")
        g = self.ok(aws("delete-replication-group", "--replication-group-id",
                        "del", "--final-snapshot-identifier", "del-final"))[
            "ReplicationGroup"]
        self.assertEqual(g["Status"], "deleting")
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "del"))[
            "ReplicationGroups"][0]
        self.assertEqual(g["Status"], "deleting")
        self.fails(aws("delete-replication-group", "--replication-group-id",
                       "del"), "InvalidReplicationGroupState")
        EMU.control("advance", {})
        self.fails(aws("describe-replication-groups",
                       "--replication-group-id", "del"),
                   "ReplicationGroupNotFoundFault")
        self.fails(aws("describe-cache-clusters", "--cache-cluster-id",
                       "del-001"), "CacheClusterNotFound")
        j = self.ok(aws("describe-snapshots", "--snapshot-name", "del-final",
                        "--show-node-group-config"))
        s = j["Snapshots"][0]
        self.assertEqual(s["SnapshotStatus"], "available")
        self.assertEqual(s["SnapshotSource"], "manual")
        self.assertEqual(s["ReplicationGroupId"], "del")
        self.assertEqual(s["NodeSnapshots"][0]["NodeGroupConfiguration"]
                         ["ReplicaCount"], 1)

    def test_delete_retain_primary(self):
        self.create("keep", "--num-cache-clusters", 3)
        EMU.wait_status("keep", "available")
        self.ok(aws("delete-replication-group", "--replication-group-id",
                    "keep", "--retain-primary-cluster"))
        EMU.wait_status("keep", "gone")
        c = self.ok(aws("describe-cache-clusters", "--cache-cluster-id",
                        "keep-001"))["CacheClusters"][0]
        self.assertEqual(c["CacheClusterStatus"], "available")
        self.assertNotIn("ReplicationGroupId", c)
        self.fails(aws("describe-cache-clusters", "--cache-cluster-id",
                       "keep-002"), "CacheClusterNotFound")

    def test_snapshotting_and_events(self):
        self.create("ev", "--num-cache-clusters", 2,
                    "--snapshot-retention-limit", 1)
        EMU.wait_status("ev", "available")
        self.hold("Snapshot")
        EMU.control("snapshot", {"replication_group_id": "ev"})
        g = self.ok(aws("describe-replication-groups",
                        "--replication-group-id", "ev"))[
            "ReplicationGroups"][0]
        self.assertEqual(g["Status"], "snapshotting")
        self.fails(aws("modify-replication-group", "--replication-group-id",
                       "ev", "--snapshot-retention-limit", 2),
                   "InvalidReplicationGroupState")
        EMU.control("advance", {})
        j = self.ok(aws("describe-snapshots", "--replication-group-id", "ev",
                        "--snapshot-source", "system"))
        self.assertEqual(j["Snapshots"][0]["SnapshotStatus"], "available")
        j = self.ok(aws("describe-events", "--source-type",
                        "replication-group", "--source-identifier", "ev",
                        "--start-time",
                        time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                      time.gmtime(time.time() - 600))))
        msgs = [e["Message"] for e in j["Events"]]
        self.assertTrue(any("created" in m for m in msgs), msgs)
        self.assertTrue(any("available" in m for m in msgs), msgs)
        self.assertTrue(any("Snapshot succeeded" in m for m in msgs), msgs)
        self.assertTrue(all(e["SourceType"] == "replication-group"
                            for e in j["Events"]))
        j = self.ok(aws("describe-events", "--source-type", "cache-cluster",
                        "--duration", 10))
        self.assertTrue(any(e["SourceIdentifier"] == "ev-001"
                            for e in j["Events"]))

    def test_failover_limit(self):
        self.create("fo", "--num-node-groups", 2,
                    "--replicas-per-node-group", 1)
        EMU.wait_status("fo", "available")
        EMU.control("config", {"test_failover_limit": 2, "delay_ms": 0})
        g = self.ok(aws("test-failover", "--replication-group-id", "fo",
                        "--node-group-id", "0001"))["ReplicationGroup"]
        self.assertEqual(g["Status"], "modifying")
        g = EMU.wait_status("fo", "available")
        self.ok(aws("test-failover", "--replication-group-id", "fo",
                    "--node-group-id", "0002"))
        EMU.wait_status("fo", "available")
        self.fails(aws("test-failover", "--replication-group-id", "fo",
                       "--node-group-id", "0001"),
                   "APICallRateForCustomerExceeded")
        self.fails(aws("test-failover", "--replication-group-id", "fo",
                       "--node-group-id", "0009"), "NodeGroupNotFoundFault")
        j = self.ok(aws("describe-events", "--source-type",
                        "replication-group", "--source-identifier", "fo",
                        "--duration", 5))
        msgs = [e["Message"] for e in j["Events"]]
        self.assertIn("Test Failover API called for node group 0001", msgs)


class Faults(Base):
    def setUp(self):
        super().setUp()
        self.create("flt")
        EMU.wait_status("flt", "available")

    def calls(self, action):
        c = EMU.control("calls")
        return (c["received"].get(action, 0), c["injected"].get(action, 0))

    def test_throttling_is_retried(self):
        EMU.control("calls/reset", {})
        EMU.control("faults", {"action": "DescribeReplicationGroups",
                               "type": "throttle", "count": 2})
        r = aws("describe-replication-groups", env=cli_env(
            AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="3"))
        j = self.ok(r)
        self.assertEqual(j["ReplicationGroups"][0]["ReplicationGroupId"],
                         "flt")
        self.assertEqual(self.calls("DescribeReplicationGroups"), (3, 2))

    def test_throttling_without_retries(self):
        EMU.control("faults", {"action": "DescribeReplicationGroups",
                               "type": "throttle", "count": 1})
        r = self.fails(aws("describe-replication-groups", env=cli_env(
            AWS_MAX_ATTEMPTS="1")), "Throttling")
        self.assertIn("Rate exceeded", r.err)

    def test_5xx_and_dropped_connections_are_retried(self):
        EMU.control("calls/reset", {})
        EMU.control("faults", {"action": "DescribeCacheClusters",
                               "type": "unavailable", "count": 1})
        EMU.control("faults", {"action": "DescribeCacheClusters",
                               "type": "drop", "count": 1})
        self.ok(aws("describe-cache-clusters", env=cli_env(
            AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="3")))
        self.assertEqual(self.calls("DescribeCacheClusters"), (3, 2))
        EMU.control("faults", {"action": "DescribeCacheClusters",
                               "type": "internal", "count": 1})
        self.fails(aws("describe-cache-clusters",
                       env=cli_env(AWS_MAX_ATTEMPTS="1")), "InternalFailure")

    def test_malformed_and_lost_response(self):
        EMU.control("faults", {"action": "DescribeReplicationGroups",
                               "type": "malformed", "count": 1})
        r = aws("describe-replication-groups",
                env=cli_env(AWS_MAX_ATTEMPTS="1"))
        self.assertNotEqual(r.rc, 0, r)
        # a create whose response is lost: the group exists, and a retry
        # gets ReplicationGroupAlreadyExists; the counter tells how many
        # creates reached the service
        EMU.control("calls/reset", {})
        EMU.control("faults", {"action": "CreateReplicationGroup",
                               "type": "drop", "execute": True, "count": 1})
        r = aws("create-replication-group", "--replication-group-id",
                "lost", "--replication-group-description", "x",
                env=cli_env(AWS_MAX_ATTEMPTS="2", AWS_RETRY_MODE="standard"))
        self.fails(r, "ReplicationGroupAlreadyExists")
        self.assertEqual(self.calls("CreateReplicationGroup"), (2, 1))
        self.assertIsNotNone(EMU.group("lost"))


class Credentials(Base):
    def setUp(self):
        super().setUp()
        self.create("cred")
        EMU.wait_status("cred", "available")

    def test_imds_v2_credentials(self):
        base = EMU.url
        req = urllib.request.Request(
            base + "/latest/meta-data/iam/security-credentials/")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(cm.exception.code, 401)
        req = urllib.request.Request(base + "/latest/api/token", data=b"",
                                     method="PUT")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(cm.exception.code, 400)
        EMU.control("requests", method="DELETE")
        env = cli_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                      AWS_EC2_METADATA_DISABLED=None,
                      AWS_EC2_METADATA_SERVICE_ENDPOINT=base + "/")
        j = self.ok(aws("describe-replication-groups", env=env))
        self.assertEqual(j["ReplicationGroups"][0]["ReplicationGroupId"],
                         "cred")
        log = EMU.control("requests?action=DescribeReplicationGroups")
        self.assertTrue(log["requests"][-1]["access_key"].startswith("ASIA"))

    def test_sts_web_identity(self):
        data = urllib.parse.urlencode({
            "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
            "RoleArn": "arn:aws:iam::123456789012:role/cachekeeper",
            "RoleSessionName": "ck", "WebIdentityToken": "jwt"}).encode()
        with urllib.request.urlopen(EMU.url + "/", data=data,
                                    timeout=5) as r:
            doc = ET.fromstring(r.read())
        ns = {"s": "https://sts.amazonaws.com/doc/2011-06-15/"}
        creds = doc.find("s:AssumeRoleWithWebIdentityResult/s:Credentials",
                         ns)
        ak = creds.find("s:AccessKeyId", ns).text
        sk = creds.find("s:SecretAccessKey", ns).text
        tok = creds.find("s:SessionToken", ns).text
        self.assertTrue(creds.find("s:Expiration", ns).text.endswith("Z"))
        env = cli_env(AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk,
                      AWS_SESSION_TOKEN=tok)
        self.ok(aws("describe-replication-groups", env=env))
        self.fails(aws("describe-replication-groups", env=cli_env(
            AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk)),
            "InvalidClientTokenId")
        # short-lived credentials expire
        EMU.control("sts", {"duration_seconds": 1})
        with urllib.request.urlopen(EMU.url + "/", data=data,
                                    timeout=5) as r:
            doc = ET.fromstring(r.read())
        creds = doc.find("s:AssumeRoleWithWebIdentityResult/s:Credentials",
                         ns)
        time.sleep(1.2)
        self.fails(aws("describe-replication-groups", env=cli_env(
            AWS_ACCESS_KEY_ID=creds.find("s:AccessKeyId", ns).text,
            AWS_SECRET_ACCESS_KEY=creds.find("s:SecretAccessKey", ns).text,
            AWS_SESSION_TOKEN=creds.find("s:SessionToken", ns).text)),
            "ExpiredToken")


def _all_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _all_tests(t)
        else:
            yield t


def run_worker(index, jobs):
    """Run every jobs-th test (by sorted id) against an own emulator."""
    tests = sorted(_all_tests(unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules[__name__])), key=lambda t: t.id())
    suite = unittest.TestSuite(tests[index::jobs])
    # The suite runs setUpModule/tearDownModule (start/stop the emulator).
    result = unittest.TextTestRunner(verbosity=2,
                                     stream=sys.stdout).run(suite)
    if not result.wasSuccessful() and EMU is not None:
        print("---- emulator stderr ----")
        print(EMU.stderr()[-5000:])
    failed = len(result.failures) + len(result.errors) + \
        len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    return result.testsRun - failed - skipped, failed, skipped


def main(argv):
    jobs = min(2, os.cpu_count() or 1)
    if argv[:1] == ["--worker"]:
        index, jobs = (int(x) for x in argv[1].split("/"))
        passed, failed, skipped = run_worker(index, jobs)
        print("WORKER-RESULT %d %d %d" % (passed, failed, skipped))
        return 0
    if argv[:1] == ["--jobs"]:
        jobs = max(1, int(argv[1]))
    reason = ensure_tools()
    if reason:
        print("SKIP: %s" % reason)
        print("0 passed, 0 failed, 1 skipped")
        return 77
    # The CLI's start-up (about a second of CPU per call) dominates, so
    # the tests run in `jobs` processes, each with its own emulator.
    procs = [subprocess.Popen([PYTHON, os.path.abspath(__file__),
                               "--worker", "%d/%d" % (i, jobs)],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
             for i in range(jobs)]
    totals = [0, 0, 0]
    for i, proc in enumerate(procs):
        out = proc.communicate()[0].decode(errors="replace")
        got = False
        for line in out.splitlines():
            if line.startswith("WORKER-RESULT "):
                for k, v in enumerate(line.split()[1:]):
                    totals[k] += int(v)
                got = True
            else:
                print("[%d] %s" % (i, line))
        if not got or proc.returncode != 0:
            print("[%d] worker exited with %s without a result"
                  % (i, proc.returncode))
            totals[1] += 1
    print("%d passed, %d failed, %d skipped" % tuple(totals))
    return 0 if totals[1] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
