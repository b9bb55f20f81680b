"""State and rules of the ElastiCache emulator (no HTTP, no XML).

The Backend holds replication groups, their node groups (shards) and
member cache clusters, snapshots, tags and events, applies the service's
validation rules, and drives the asynchronous status transitions with a
scheduler thread:

    creating -> available                       CreateReplicationGroup
    available -> modifying -> available         Modify*, Increase/Decrease*,
                                                TestFailover, maintenance
    available -> snapshotting -> available      control API / final snapshot
    available -> deleting -> (gone)             DeleteReplicationGroup

Each action's handler returns a plain dict shaped like the botocore output
shape of that action (ec_protocol serialises it) or raises AwsError.

Deliberately simplified (see the module docstring of elasticache_emulator
for the full list): one cache node ("0001") per cache cluster, no VPC /
subnet / user-group model, endpoints are synthetic names (or the
--node-address given), slot migration completes in one step.
"""

import base64
import copy
import hashlib
import heapq
import itertools
import random
import re
import string
import threading
import time

from ec_protocol import error_status

SLOTS = 16384


class AwsError(Exception):
    """An error returned to the client in the AWS Query error format."""

    def __init__(self, code, message, status=None, sender=True):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.status = status if status is not None else error_status(code)
        self.sender = sender


def _ipv(msg):
    return AwsError("InvalidParameterValue", msg)


def _ipc(msg):
    return AwsError("InvalidParameterCombination", msg)


def _rg_state(msg):
    return AwsError("InvalidReplicationGroupState", msg)


DEFAULT_CONFIG = {
    # Default duration of an asynchronous transition in ms.
    "delay_ms": 300,
    # Per action overrides, e.g. {"CreateReplicationGroup": 2000};
    # -1 holds the transition until POST /_emulator/advance.
    # Keys: the action names plus "Maintenance", "Snapshot",
    # "FinalSnapshot".
    "delays": {},
    "region": "us-east-1",
    "account_id": "123456789012",
    # Cache clusters (nodes) per customer -> ClusterQuotaForCustomerExceeded
    "cluster_quota": 1000,
    # Nodes in one replication group -> NodeQuotaForClusterExceeded
    "node_quota_per_cluster": 90,
    # Shards in one replication group ->
    # NodeGroupsPerReplicationGroupQuotaExceeded
    "shard_quota_per_cluster": 90,
    "tag_quota": 50,
    # TestFailover: node groups per rolling window; scope "customer" (as
    # the API reference words it) or "group" (per replication group).
    "test_failover_limit": 15,
    "test_failover_window_s": 86400,
    "test_failover_scope": "customer",
    # If set, every endpoint Address is this (e.g. "127.0.0.1") so that a
    # test can point cachekeeper at local redis servers.
    "node_address": None,
    # The next N CreateReplicationGroup calls end in "create-failed".
    "create_fail_next": 0,
    # The next N modifications of CacheNodeType or EngineVersion are
    # rolled back at the end of the transition, as AWS does when it cannot
    # complete them (e.g. no capacity for the node type), with an event.
    "revert_next_modify": 0,
}

REDIS_VERSIONS = ["3.2.4", "3.2.6", "3.2.10", "4.0.10", "5.0.0", "5.0.3",
                  "5.0.4", "5.0.5", "5.0.6", "6.0", "6.2", "6.x", "7.0",
                  "7.1"]
VALKEY_VERSIONS = ["7.2", "8.0", "8.1"]
DEFAULT_VERSION = {"redis": "7.1", "valkey": "8.0"}
DEFAULT_NODE_TYPE = "cache.t3.micro"
NODE_TYPE_RE = re.compile(r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
RG_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
NG_ID_RE = re.compile(r"^\d{1,4}$")
SG_ID_RE = re.compile(r"^sg-[0-9a-f]{1,17}$")
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
AUTH_BAD_CHARS = set('/"@%')


def version_tuple(v):
    out = []
    for part in v.split("."):
        if part.isdigit():
            out.append(int(part))
        elif part == "x":
            out.append(0)
        else:
            return None
    while len(out) < 3:
        out.append(0)
    return tuple(out)


def family_of(engine, version):
    vt = version_tuple(version)
    if engine == "valkey":
        return "valkey%d" % vt[0]
    if vt[0] >= 7:
        return "redis7"
    if vt[0] == 6:
        return "redis6.x"
    return "redis%d.%d" % (vt[0], vt[1])


def region_short(region):
    parts = region.split("-")
    dirs = {"north": "n", "south": "s", "east": "e", "west": "w",
            "central": "c", "northeast": "ne", "southeast": "se",
            "northwest": "nw", "southwest": "sw"}
    if len(parts) >= 3:
        return parts[0] + "".join(dirs.get(p, p[:1]) for p in parts[1:-1]) \
            + parts[-1]
    return region.replace("-", "")


def parse_hhmm(text):
    m = re.fullmatch(r"(\d{2}):(\d{2})", text)
    if not m:
        return None
    h, mi = int(m.group(1)), int(m.group(2))
    if h > 23 or mi > 59:
        return None
    return h * 60 + mi


def parse_snapshot_window(text):
    """'05:00-09:00' -> (start, end) minutes of day; raises AwsError."""
    m = re.fullmatch(r"(\d{2}:\d{2})-(\d{2}:\d{2})", text or "")
    a = parse_hhmm(m.group(1)) if m else None
    b = parse_hhmm(m.group(2)) if m else None
    if a is None or b is None:
        raise _ipv("Invalid snapshot window format: %s. The window must be "
                   "in the format hh24:mi-hh24:mi." % text)
    length = (b - a) % 1440
    if length < 60:
        raise _ipv("Snapshot window must be at least 60 minutes.")
    return a, b


def parse_maintenance_window(text):
    """'sun:23:00-mon:01:30' -> (start, end) minutes of week."""
    m = re.fullmatch(
        r"([a-zA-Z]{3}):(\d{2}:\d{2})-([a-zA-Z]{3}):(\d{2}:\d{2})",
        text or "")
    ok = bool(m) and m.group(1).lower() in DAYS and \
        m.group(3).lower() in DAYS
    a = parse_hhmm(m.group(2)) if ok else None
    b = parse_hhmm(m.group(4)) if ok else None
    if a is None or b is None:
        raise _ipv("Invalid maintenance window format: %s. The window must "
                   "be in the format ddd:hh24:mi-ddd:hh24:mi." % text)
    start = DAYS.index(m.group(1).lower()) * 1440 + a
    end = DAYS.index(m.group(3).lower()) * 1440 + b
    length = (end - start) % (7 * 1440)
    if length < 60:
        raise _ipv("Maintenance window must be at least 60 minutes.")
    if length > 24 * 60:
        raise _ipv("Maintenance window must be less than 24 hours.")
    return start, end


def windows_overlap(snap, maint):
    """Daily snapshot window vs weekly maintenance window."""
    s0, s1 = snap
    m0, m1 = maint
    week = 7 * 1440
    mlen = (m1 - m0) % week
    slen = (s1 - s0) % 1440
    for day in range(8):
        a = (day * 1440 + s0) % week
        # intervals [a, a+slen) and [m0, m0+mlen) on a circle of `week`
        for shift in (-week, 0, week):
            b = m0 + shift
            if a < b + mlen and b < a + slen:
                return True
    return False


def slot_ranges(n):
    """Even split of the 16384 slots into n contiguous ranges."""
    out = []
    base, extra = divmod(SLOTS, n)
    start = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        out.append("%d-%d" % (start, start + size - 1))
        start += size
    return out


def _rand(n, alphabet=string.ascii_lowercase + string.digits):
    return "".join(random.choice(alphabet) for _ in range(n))


def _b64(text):
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text):
    try:
        return base64.urlsafe_b64decode(text.encode()).decode()
    except Exception:
        raise _ipv("Invalid marker: %s" % text)


def _max_records(value, lo, hi, default):
    if value is None:
        return default
    if value < lo or value > hi:
        raise _ipv("The parameter MaxRecords must be between %d and %d."
                   % (lo, hi))
    return value


class Scheduler:
    """Runs delayed callbacks (the asynchronous transitions) in one thread.

    A delay of None means "held": the job runs only when advance() is
    called for it.
    """

    def __init__(self, lock):
        self.lock = lock
        self.cond = threading.Condition(threading.Lock())
        self.heap = []
        self.held = []
        self.seq = itertools.count()
        self.epoch = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="ecemu-scheduler")
        self.thread.start()

    def add(self, delay_s, tag, fn):
        with self.cond:
            job = [None, next(self.seq), tag, fn, self.epoch]
            if delay_s is None:
                self.held.append(job)
            else:
                job[0] = time.monotonic() + max(0.0, delay_s)
                heapq.heappush(self.heap, job)
                self.cond.notify()

    def advance(self, tag=None):
        """Run now every pending job (of `tag` if given). Returns count."""
        with self.cond:
            due = []
            keep = []
            for job in self.heap + self.held:
                (due if tag is None or job[2] == tag else keep).append(job)
            self.held = [j for j in keep if j[0] is None]
            self.heap = [j for j in keep if j[0] is not None]
            heapq.heapify(self.heap)
        due.sort(key=lambda j: j[1])
        for job in due:
            self._call(job)
        return len(due)

    def pending(self):
        with self.cond:
            return len(self.heap) + len(self.held)

    def clear(self):
        with self.cond:
            self.heap = []
            self.held = []
            self.epoch += 1

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def _call(self, job):
        with self.lock:
            if job[4] != self.epoch:
                return
            try:
                job[3]()
            except Exception:  # a bug in a transition must not kill us
                import traceback
                traceback.print_exc()

    def _run(self):
        while True:
            with self.cond:
                if self.stopped:
                    return
                if not self.heap:
                    self.cond.wait(1.0)
                    continue
                wait = self.heap[0][0] - time.monotonic()
                if wait > 0:
                    self.cond.wait(min(wait, 1.0))
                    continue
                job = heapq.heappop(self.heap)
            self._call(job)


class CacheCluster:
    def __init__(self, cid, rg, ng_id, role, az, now):
        self.id = cid
        self.rg_id = rg.id if rg else None
        self.ng_id = ng_id
        self.role = role
        self.az = az
        self.status = "creating"
        self.node_status = "creating"
        self.created = now
        self.cfg = None  # own settings once detached from its group
        self.tags = []


class NodeGroup:
    def __init__(self, ng_id, slots):
        self.id = ng_id
        self.slots = slots
        self.status = "creating"
        self.members = []  # cluster ids, primary first


class ReplicationGroup:
    def __init__(self, rg_id):
        self.id = rg_id
        self.description = ""
        self.status = "creating"
        self.cluster_enabled = False
        self.node_groups = {}
        self.created = time.time()
        self.cfg = {}
        self.automatic_failover = "disabled"
        self.multi_az = False
        self.pending = {}    # deferred to the maintenance window
        self.inflight = {}   # being applied by the current modification
        self.pmv = {}        # ReplicationGroupPendingModifiedValues
        self.snapshotting_cluster_id = None
        self.tags = []
        self.token = _rand(6)
        self.busy = None     # name of the operation in flight


class Backend:
    def __init__(self, config=None):
        self.lock = threading.RLock()
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        if config:
            self.config.update(config)
        self.scheduler = Scheduler(self.lock)
        self._reset_state()

    # ------------------------------------------------------------ admin

    def _reset_state(self):
        self.groups = {}
        self.clusters = {}
        self.snapshots = {}
        self.param_groups = {}
        self.events = []
        self.event_seq = itertools.count(1)
        self.failovers = []  # (time, rg_id, ng_id)

    def reset(self, keep_config=True):
        with self.lock:
            self.scheduler.clear()
            self._reset_state()
            if not keep_config:
                self.config = copy.deepcopy(DEFAULT_CONFIG)

    def update_config(self, values):
        with self.lock:
            for k, v in values.items():
                if k not in DEFAULT_CONFIG:
                    raise KeyError("unknown config key %r" % k)
                if k == "delays":
                    self.config["delays"].update(v)
                else:
                    self.config[k] = v
            return copy.deepcopy(self.config)

    def add_parameter_group(self, name, family, cluster_enabled=None):
        with self.lock:
            if cluster_enabled is None:
                cluster_enabled = name.endswith(".cluster.on")
            self.param_groups[name] = {
                "family": family, "cluster_enabled": bool(cluster_enabled)}

    def delay(self, key):
        ms = self.config["delays"].get(key, self.config["delay_ms"])
        if ms is None or ms < 0:
            return None
        return ms / 1000.0

    def advance(self, rg_id=None):
        """Complete now every pending transition (of one group)."""
        total = 0
        for _ in range(20):  # transitions may schedule follow-ups
            n = self.scheduler.advance(rg_id)
            total += n
            if n == 0:
                break
        return total

    def run_maintenance(self, rg_id=None):
        """Apply the modifications deferred to the maintenance window."""
        started = []
        with self.lock:
            for rg in list(self.groups.values()):
                if rg_id and rg.id != rg_id:
                    continue
                if not rg.pending or rg.status != "available":
                    continue
                changes = rg.pending
                rg.pending = {}
                self._start_modify(rg, changes, "Maintenance")
                started.append(rg.id)
        return started

    def create_snapshot(self, p):
        """CreateSnapshot (manual): the group's snapshot, as AWS does it
        for ReplicationGroupId (or a cluster-mode-disabled member)."""
        name = p.get("SnapshotName")
        if not name:
            raise _ipv("The parameter SnapshotName must be provided and "
                       "must not be blank.")
        rg_id = p.get("ReplicationGroupId")
        if not rg_id and p.get("CacheClusterId"):
            with self.lock:
                c = self.clusters.get(p["CacheClusterId"].lower())
                if c is None:
                    raise AwsError("CacheClusterNotFound",
                                   "CacheCluster not found: %s"
                                   % p["CacheClusterId"])
                rg_id = c.rg_id
        if not rg_id:
            raise _ipc("Either ReplicationGroupId or CacheClusterId must "
                       "be provided.")
        self.take_snapshot(rg_id, name, source="manual")
        with self.lock:
            return {"Snapshot": self._snapshot_view(self.snapshots[name],
                                                    True)}

    def take_snapshot(self, rg_id, name=None, source="automated"):
        """An automatic (system) snapshot: available -> snapshotting."""
        with self.lock:
            rg = self._get_rg(rg_id)
            self._gate(rg, "snapshot")
            now = time.time()
            name = name or "automatic.%s-%s" % (
                rg.id, time.strftime("%Y-%m-%d-%H-%M", time.gmtime(now)))
            if name in self.snapshots:
                raise AwsError("SnapshotAlreadyExistsFault",
                               "Snapshot %s already exists." % name)
            snap = self._new_snapshot(rg, name, source)
            rg.status = "snapshotting"
            src = self._snapshot_source_cluster(rg)
            if src:
                src.status = "snapshotting"
            self._event(rg.id, "replication-group",
                        "Snapshot started for replication group %s" % rg.id)

            def done():
                snap["SnapshotStatus"] = "available"
                if rg.id in self.groups:
                    rg.status = "available"
                    if src and src.id in self.clusters:
                        src.status = "available"
                self._event(rg.id, "replication-group",
                            "Snapshot succeeded for snapshot with ID '%s' "
                            "of replication group with ID '%s'"
                            % (name, rg.id))
            self.scheduler.add(self.delay("Snapshot"), rg.id, done)
            return name

    def dump(self):
        with self.lock:
            return {
                "replication_groups": [self._rg_view(rg)
                                       for rg in self._sorted_groups()],
                "pending_transitions": self.scheduler.pending(),
                "snapshots": sorted(self.snapshots),
                "events": len(self.events),
                # The AUTH tokens each group accepts, as SHA-256 digests
                # (never the tokens), oldest first.
                "auth_tokens": {
                    rg.id: [hashlib.sha256(t.encode()).hexdigest()
                            for t in rg.cfg["AuthTokens"]]
                    for rg in self._sorted_groups()},
            }

    # ------------------------------------------------------------ helpers

    def _arn(self, kind, name):
        return "arn:aws:elasticache:%s:%s:%s:%s" % (
            self.config["region"], self.config["account_id"], kind, name)

    def _event(self, source_id, source_type, message):
        self.events.append({"seq": next(self.event_seq),
                            "SourceIdentifier": source_id,
                            "SourceType": source_type,
                            "Message": message,
                            "Date": time.time()})
        if len(self.events) > 20000:
            del self.events[:5000]

    def _sorted_groups(self):
        return [self.groups[k] for k in sorted(self.groups)]

    def _get_rg(self, rg_id):
        rg = self.groups.get((rg_id or "").lower())
        if rg is None:
            raise AwsError("ReplicationGroupNotFoundFault",
                           "Replication group %s not found." % rg_id)
        return rg

    def _members(self, rg):
        for ng in rg.node_groups.values():
            for cid in ng.members:
                yield self.clusters[cid]

    def _gate(self, rg, what="modify"):
        """The state gate: group, shards and members must be available."""
        if rg.status != "available" or rg.busy:
            raise _rg_state("Replication group must be in available state "
                            "to %s." % what)
        for ng in rg.node_groups.values():
            if ng.status != "available":
                raise _rg_state("Node group %s of replication group %s is "
                                "not in available state." % (ng.id, rg.id))
        for c in self._members(rg):
            if c.status != "available":
                raise _rg_state("Cache cluster %s is not in available state."
                                % c.id)

    def _azs(self):
        r = self.config["region"]
        return [r + "a", r + "b", r + "c"]

    def _total_clusters(self):
        return len(self.clusters)

    def _check_quotas(self, new_clusters, rg_nodes, shards):
        if shards > self.config["shard_quota_per_cluster"]:
            raise AwsError(
                "NodeGroupsPerReplicationGroupQuotaExceeded",
                "The request cannot be processed because it would exceed "
                "the maximum allowed number of node groups (shards) in a "
                "single replication group. The default maximum is %d."
                % self.config["shard_quota_per_cluster"])
        if rg_nodes > self.config["node_quota_per_cluster"]:
            raise AwsError(
                "NodeQuotaForClusterExceeded",
                "The request cannot be processed because it would exceed "
                "the allowed number of cache nodes in a single cluster.")
        if self._total_clusters() + new_clusters > \
                self.config["cluster_quota"]:
            raise AwsError(
                "ClusterQuotaForCustomerExceeded",
                "The request cannot be processed because it would exceed "
                "the allowed number of clusters per customer.")

    def _param_group(self, name):
        pg = self.param_groups.get(name)
        if pg:
            return pg
        m = re.fullmatch(
            r"default\.((?:redis|valkey)[0-9.x]+?)(\.cluster\.on)?", name)
        if m:
            return {"family": m.group(1), "cluster_enabled": bool(m.group(2))}
        raise AwsError("CacheParameterGroupNotFound",
                       "CacheParameterGroup %s not found." % name)

    def _default_pg(self, engine, version, cluster_enabled):
        return "default.%s%s" % (family_of(engine, version),
                                 ".cluster.on" if cluster_enabled else "")

    def _check_version(self, engine, version):
        known = VALKEY_VERSIONS if engine == "valkey" else REDIS_VERSIONS
        if version not in known:
            raise _ipc("Cannot find version %s for %s" % (version, engine))

    def _check_auth_token(self, token):
        if not 16 <= len(token) <= 128 or any(
                c in AUTH_BAD_CHARS or not (32 < ord(c) < 127)
                for c in token):
            raise _ipv("Invalid AuthToken provided. The AUTH token must be "
                       "16 to 128 printable characters and cannot contain "
                       "'/', '\"', '@' or '%'.")

    def _check_windows(self, snapshot_window, maintenance_window):
        sw = parse_snapshot_window(snapshot_window) \
            if snapshot_window else None
        mw = parse_maintenance_window(maintenance_window) \
            if maintenance_window else None
        if sw and mw and windows_overlap(sw, mw):
            raise _ipc("The snapshot window and maintenance window must "
                       "not overlap.")

    def _endpoint(self, rg, host):
        addr = self.config["node_address"] or host
        return {"Address": addr, "Port": rg.cfg["Port"]}

    def _host(self, rg, kind, name=None, ng="0001"):
        rs = region_short(self.config["region"])
        if kind == "primary":
            return "%s.%s.ng.%s.%s.cache.amazonaws.com" % (
                rg.id, rg.token, ng, rs)
        if kind == "reader":
            return "%s-ro.%s.ng.%s.%s.cache.amazonaws.com" % (
                rg.id, rg.token, ng, rs)
        if kind == "config":
            return "%s.%s.clustercfg.%s.cache.amazonaws.com" % (
                rg.id, rg.token, rs)
        return "%s.%s.0001.%s.cache.amazonaws.com" % (name, rg.token, rs)

    def _new_cluster(self, rg, ng, role, az, now):
        if rg.cluster_enabled:
            prefix = "%s-%s-" % (rg.id, ng.id)
            width = 3
        else:
            prefix = "%s-" % rg.id
            width = 3
        n = 1
        while "%s%0*d" % (prefix, width, n) in self.clusters:
            n += 1
        c = CacheCluster("%s%0*d" % (prefix, width, n), rg, ng.id, role, az,
                         now)
        c.tags = rg.tags
        self.clusters[c.id] = c
        ng.members.append(c.id)
        return c

    def _next_ng_id(self, rg):
        n = 1
        while "%04d" % n in rg.node_groups:
            n += 1
        return "%04d" % n

    # ------------------------------------------------------------ views

    def _rg_view(self, rg):
        cfg = rg.cfg
        out = {
            "ReplicationGroupId": rg.id,
            "Description": rg.description,
            "Engine": cfg["Engine"],
            "ClusterMode": "enabled" if rg.cluster_enabled else "disabled",
            "Status": rg.status,
            "PendingModifiedValues": dict(rg.pmv),
            "MemberClusters": sorted(c.id for c in self._members(rg)),
            "NodeGroups": [],
            "AutomaticFailover": rg.automatic_failover,
            "MultiAZ": "enabled" if rg.multi_az else "disabled",
            "SnapshotRetentionLimit": cfg["SnapshotRetentionLimit"],
            "SnapshotWindow": cfg["SnapshotWindow"],
            "ClusterEnabled": rg.cluster_enabled,
            "CacheNodeType": cfg["CacheNodeType"],
            "AuthTokenEnabled": bool(cfg["AuthTokens"]),
            "TransitEncryptionEnabled": cfg["TransitEncryptionEnabled"],
            "AtRestEncryptionEnabled": cfg["AtRestEncryptionEnabled"],
            "ARN": self._arn("replicationgroup", rg.id),
            "UserGroupIds": [],
            "LogDeliveryConfigurations": [],
            "ReplicationGroupCreateTime": rg.created,
            "DataTiering": "disabled",
            "AutoMinorVersionUpgrade": cfg["AutoMinorVersionUpgrade"],
            "NetworkType": "ipv4",
            "IpDiscovery": "ipv4",
        }
        if cfg["TransitEncryptionEnabled"]:
            out["TransitEncryptionMode"] = "required"
        if cfg.get("AuthTokenLastModifiedDate"):
            out["AuthTokenLastModifiedDate"] = cfg["AuthTokenLastModifiedDate"]
        if cfg.get("KmsKeyId"):
            out["KmsKeyId"] = cfg["KmsKeyId"]
        if rg.snapshotting_cluster_id and not rg.cluster_enabled:
            out["SnapshottingClusterId"] = rg.snapshotting_cluster_id
        ready = rg.status not in ("creating", "create-failed")
        if rg.cluster_enabled and ready:
            out["ConfigurationEndpoint"] = self._endpoint(
                rg, self._host(rg, "config"))
        for ng in rg.node_groups.values():
            ngv = {"NodeGroupId": ng.id, "Status": ng.status,
                   "NodeGroupMembers": []}
            if rg.cluster_enabled:
                ngv["Slots"] = ng.slots
            elif ready:
                ngv["PrimaryEndpoint"] = self._endpoint(
                    rg, self._host(rg, "primary", ng=ng.id))
                ngv["ReaderEndpoint"] = self._endpoint(
                    rg, self._host(rg, "reader", ng=ng.id))
            for cid in ng.members:
                c = self.clusters[cid]
                mv = {"CacheClusterId": c.id, "CacheNodeId": "0001",
                      "PreferredAvailabilityZone": c.az}
                if not rg.cluster_enabled and c.status != "creating":
                    mv["ReadEndpoint"] = self._endpoint(
                        rg, self._host(rg, "node", c.id))
                    mv["CurrentRole"] = c.role
                ngv["NodeGroupMembers"].append(mv)
            out["NodeGroups"].append(ngv)
        return out

    def _cluster_cfg(self, c):
        if c.rg_id and c.rg_id in self.groups:
            return self.groups[c.rg_id].cfg, self.groups[c.rg_id]
        return c.cfg, None

    def _cluster_view(self, c, show_nodes):
        cfg, rg = self._cluster_cfg(c)
        pmv = {}
        if rg is not None:
            for src in (rg.pending, rg.inflight):
                for k in ("EngineVersion", "CacheNodeType"):
                    if k in src:
                        pmv[k] = src[k]
            if "AuthTokenStatus" in rg.pmv:
                pmv["AuthTokenStatus"] = rg.pmv["AuthTokenStatus"]
        out = {
            "CacheClusterId": c.id,
            "ClientDownloadLandingPage": "https://console.aws.amazon.com/"
                                         "elasticache/home#client-download:",
            "CacheNodeType": cfg["CacheNodeType"],
            "Engine": cfg["Engine"],
            "EngineVersion": cfg["EngineVersion"],
            "CacheClusterStatus": c.status,
            "NumCacheNodes": 1,
            "PreferredAvailabilityZone": c.az,
            "CacheClusterCreateTime": c.created,
            "PreferredMaintenanceWindow": cfg["PreferredMaintenanceWindow"],
            "PendingModifiedValues": pmv,
            "CacheSecurityGroups": [],
            "CacheParameterGroup": {
                "CacheParameterGroupName": cfg["CacheParameterGroupName"],
                "ParameterApplyStatus": cfg.get("ParameterApplyStatus",
                                                "in-sync"),
                "CacheNodeIdsToReboot": []},
            "CacheSubnetGroupName": cfg.get("CacheSubnetGroupName")
            or "default",
            "AutoMinorVersionUpgrade": cfg["AutoMinorVersionUpgrade"],
            "SecurityGroups": [{"SecurityGroupId": sg, "Status": "active"}
                               for sg in cfg["SecurityGroupIds"]],
            "SnapshotRetentionLimit": cfg["SnapshotRetentionLimit"],
            "SnapshotWindow": cfg["SnapshotWindow"],
            "AuthTokenEnabled": bool(cfg["AuthTokens"]),
            "TransitEncryptionEnabled": cfg["TransitEncryptionEnabled"],
            "AtRestEncryptionEnabled": cfg["AtRestEncryptionEnabled"],
            "ARN": self._arn("cluster", c.id),
            "ReplicationGroupLogDeliveryEnabled": False,
            "LogDeliveryConfigurations": [],
            "NetworkType": "ipv4",
            "IpDiscovery": "ipv4",
        }
        if cfg.get("AuthTokenLastModifiedDate"):
            out["AuthTokenLastModifiedDate"] = cfg["AuthTokenLastModifiedDate"]
        if cfg.get("NotificationTopicArn"):
            out["NotificationConfiguration"] = {
                "TopicArn": cfg["NotificationTopicArn"],
                "TopicStatus": cfg.get("NotificationTopicStatus", "active")}
        if rg is not None:
            out["ReplicationGroupId"] = rg.id
        if show_nodes and c.status not in ("creating", "deleting"):
            holder = rg or _Detached(c, cfg)
            out["CacheNodes"] = [{
                "CacheNodeId": "0001",
                "CacheNodeStatus": c.node_status,
                "CacheNodeCreateTime": c.created,
                "Endpoint": self._endpoint(holder,
                                           self._host(holder, "node", c.id)),
                "ParameterGroupStatus": cfg.get("ParameterApplyStatus",
                                                "in-sync"),
                "CustomerAvailabilityZone": c.az,
            }]
        return out

    # ------------------------------------------------------------ snapshots

    def _snapshot_source_cluster(self, rg):
        if rg.snapshotting_cluster_id in self.clusters:
            return self.clusters[rg.snapshotting_cluster_id]
        for c in self._members(rg):
            if c.role == "replica" and not rg.cluster_enabled:
                return c
        for c in self._members(rg):
            return c
        return None

    def _new_snapshot(self, rg, name, source):
        cfg = rg.cfg
        now = time.time()
        src = self._snapshot_source_cluster(rg)
        snap = {
            "SnapshotName": name,
            "ReplicationGroupId": rg.id,
            "ReplicationGroupDescription": rg.description,
            "SnapshotStatus": "creating",
            "SnapshotSource": source,
            "CacheNodeType": cfg["CacheNodeType"],
            "Engine": cfg["Engine"],
            "EngineVersion": cfg["EngineVersion"],
            "PreferredMaintenanceWindow": cfg["PreferredMaintenanceWindow"],
            "Port": cfg["Port"],
            "CacheParameterGroupName": cfg["CacheParameterGroupName"],
            "CacheSubnetGroupName": cfg.get("CacheSubnetGroupName")
            or "default",
            "VpcId": "vpc-00000000000000000",
            "AutoMinorVersionUpgrade": cfg["AutoMinorVersionUpgrade"],
            "SnapshotRetentionLimit": cfg["SnapshotRetentionLimit"],
            "SnapshotWindow": cfg["SnapshotWindow"],
            "NumNodeGroups": len(rg.node_groups),
            "AutomaticFailover": rg.automatic_failover,
            "NodeSnapshots": [],
            "ARN": self._arn("snapshot", name),
            "DataTiering": "disabled",
            "_created": now,
            "_tags": [],
        }
        if not rg.cluster_enabled and src is not None:
            snap["CacheClusterId"] = src.id
        for ng in rg.node_groups.values():
            prim = next((self.clusters[c] for c in ng.members
                         if self.clusters[c].role == "primary"), None)
            if prim is None:
                continue
            snap["NodeSnapshots"].append({
                "CacheClusterId": prim.id if not rg.cluster_enabled else
                None,
                "NodeGroupId": ng.id,
                "CacheNodeId": "0001",
                "CacheSize": "5 MB",
                "CacheNodeCreateTime": prim.created,
                "SnapshotCreateTime": now,
                "_ngc": {"NodeGroupId": ng.id, "Slots": ng.slots,
                         "ReplicaCount": len(ng.members) - 1,
                         "PrimaryAvailabilityZone": prim.az,
                         "ReplicaAvailabilityZones": [
                             self.clusters[c].az for c in ng.members
                             if c != prim.id]},
            })
        self.snapshots[name] = snap
        return snap

    def _snapshot_view(self, snap, show_ng):
        out = {k: v for k, v in snap.items() if not k.startswith("_")}
        nodes = []
        for ns in snap["NodeSnapshots"]:
            n = {k: v for k, v in ns.items()
                 if not k.startswith("_") and v is not None}
            if show_ng:
                n["NodeGroupConfiguration"] = dict(ns["_ngc"])
            nodes.append(n)
        out["NodeSnapshots"] = nodes
        return out

    # ------------------------------------------------------------ create

    def create_replication_group(self, p):
        with self.lock:
            return self._create(p)

    def _create(self, p):
        rg_id = p.get("ReplicationGroupId")
        if not rg_id:
            raise _ipv("The parameter ReplicationGroupId must be provided "
                       "and must not be blank.")
        if not p.get("ReplicationGroupDescription"):
            raise _ipv("The parameter ReplicationGroupDescription must be "
                       "provided and must not be blank.")
        rg_id = rg_id.lower()
        if not RG_ID_RE.match(rg_id) or rg_id.endswith("-") or "--" in rg_id:
            raise _ipv("The parameter ReplicationGroupId is not a valid "
                       "identifier. Identifiers must begin with a letter; "
                       "must contain only ASCII letters, digits, and "
                       "hyphens; and must not end with a hyphen or contain "
                       "two consecutive hyphens.")
        if rg_id in self.groups:
            raise AwsError("ReplicationGroupAlreadyExists",
                           "Replication group with specified name already "
                           "exists.")
        for unsupported in ("PrimaryClusterId", "GlobalReplicationGroupId",
                            "SnapshotArns"):
            if p.get(unsupported):
                raise _ipv("The emulator does not support %s." % unsupported)
        engine = (p.get("Engine") or "redis").lower()
        if engine not in ("redis", "valkey"):
            raise _ipv("Invalid value for parameter Engine: %s. Replication "
                       "groups support only the redis and valkey engines."
                       % p.get("Engine"))
        version = p.get("EngineVersion") or DEFAULT_VERSION[engine]
        self._check_version(engine, version)
        node_type = p.get("CacheNodeType") or DEFAULT_NODE_TYPE
        if not NODE_TYPE_RE.match(node_type):
            raise _ipv("Invalid value for parameter CacheNodeType: %s"
                       % node_type)

        ncc = p.get("NumCacheClusters")
        nng = p.get("NumNodeGroups")
        rpng = p.get("ReplicasPerNodeGroup")
        ngc = p.get("NodeGroupConfiguration") or []
        pg_name = p.get("CacheParameterGroupName")
        pg = self._param_group(pg_name) if pg_name else None

        if ncc is not None and (nng is not None or len(ngc) > 1):
            raise _ipc("NumCacheClusters cannot be specified together with "
                       "NumNodeGroups or NodeGroupConfiguration for more "
                       "than one node group.")
        if ncc is not None and rpng is not None:
            raise _ipc("Cannot specify both NumCacheClusters and "
                       "ReplicasPerNodeGroup.")
        if pg is not None:
            cluster_enabled = pg["cluster_enabled"]
        else:
            cluster_enabled = nng is not None or len(ngc) > 1
        if not cluster_enabled and ((nng or 1) > 1 or len(ngc) > 1):
            raise _ipc("Cluster mode must be enabled (a parameter group with "
                       "cluster-enabled set to yes) to create a replication "
                       "group with more than one node group.")
        if pg is not None and pg["family"] != family_of(engine, version):
            raise _ipc("Expected a parameter group of family %s but found "
                       "one of family %s" % (family_of(engine, version),
                                             pg["family"]))
        if pg_name is None:
            pg_name = self._default_pg(engine, version, cluster_enabled)

        if rpng is not None and not 0 <= rpng <= 5:
            raise _ipv("The parameter ReplicasPerNodeGroup must be between "
                       "0 and 5.")
        # Shape of the group: list of (ng_id or None, slots or None,
        # replica count, primary az, replica azs)
        shards = []
        if cluster_enabled:
            if nng is not None and not 1 <= nng <= 500:
                raise _ipv("The parameter NumNodeGroups must be between 1 "
                           "and 500.")
            if ngc:
                if nng is not None and nng != len(ngc):
                    raise _ipc("NumNodeGroups (%d) does not match the number "
                               "of NodeGroupConfiguration entries (%d)."
                               % (nng, len(ngc)))
                for conf in ngc:
                    rc = conf.get("ReplicaCount", rpng if rpng is not None
                                  else 1)
                    if not 0 <= rc <= 5:
                        raise _ipv("The parameter ReplicaCount must be "
                                   "between 0 and 5.")
                    shards.append([conf.get("NodeGroupId"),
                                   conf.get("Slots"), rc,
                                   conf.get("PrimaryAvailabilityZone"),
                                   conf.get("ReplicaAvailabilityZones")])
            else:
                n = nng or 1
                rc = rpng if rpng is not None else 1
                shards = [[None, None, rc, None, None] for _ in range(n)]
        else:
            if ncc is not None:
                if not 1 <= ncc <= 6:
                    raise _ipv("The parameter NumCacheClusters must be "
                               "between 1 and 6.")
                rc = ncc - 1
            elif ngc and ngc[0].get("ReplicaCount") is not None:
                rc = ngc[0]["ReplicaCount"]
            elif rpng is not None:
                rc = rpng
            else:
                rc = 0
            azs = p.get("PreferredCacheClusterAZs") or []
            if azs and len(azs) != rc + 1:
                raise _ipc("The number of PreferredCacheClusterAZs (%d) must "
                           "equal NumCacheClusters (%d)." % (len(azs), rc + 1))
            conf = ngc[0] if ngc else {}
            shards = [[conf.get("NodeGroupId"), None, rc,
                       azs[0] if azs else conf.get("PrimaryAvailabilityZone"),
                       azs[1:] if azs else
                       conf.get("ReplicaAvailabilityZones")]]

        # node group ids and slots
        used = set()
        for s in shards:
            if s[0] is not None:
                if not NG_ID_RE.match(s[0]):
                    raise _ipv("Invalid NodeGroupId: %s. A node group id "
                               "is 1 to 4 digits." % s[0])
                s[0] = s[0].zfill(4)
                if s[0] in used:
                    raise _ipv("Duplicate NodeGroupId: %s" % s[0])
                used.add(s[0])
        n = 1
        for s in shards:
            if s[0] is None:
                while "%04d" % n in used:
                    n += 1
                s[0] = "%04d" % n
                used.add(s[0])
        if cluster_enabled:
            given = [s[1] for s in shards]
            if any(given):
                if not all(given):
                    raise _ipv("Slots must be specified for every node "
                               "group or for none.")
                self._check_slots(given)
            else:
                for s, r in zip(shards, slot_ranges(len(shards))):
                    s[1] = r
        else:
            shards[0][1] = "0-16383"

        # failover / multi-AZ
        af = p.get("AutomaticFailoverEnabled")
        maz = bool(p.get("MultiAZEnabled"))
        if cluster_enabled:
            if af is False:
                raise _ipc("Automatic failover must be enabled for "
                           "replication groups with cluster mode enabled.")
            af = True
        else:
            af = bool(af)
            if af and shards[0][2] < 1:
                raise _ipc("When using automatic failover, there must be at "
                           "least 2 cache clusters in the replication group.")
        if maz and not af:
            raise _ipc("Multi-AZ cannot be enabled for a replication group "
                       "without automatic failover.")
        if maz and all(s[2] < 1 for s in shards):
            raise _ipc("Multi-AZ requires at least one replica.")

        retention = p.get("SnapshotRetentionLimit", 0)
        if not 0 <= retention <= 35:
            raise _ipv("The parameter SnapshotRetentionLimit must be between "
                       "0 and 35.")
        sw = p.get("SnapshotWindow") or "05:00-06:00"
        mw = (p.get("PreferredMaintenanceWindow") or "sun:23:00-mon:00:30")
        self._check_windows(sw, mw)
        mw = mw.lower()
        transit = bool(p.get("TransitEncryptionEnabled"))
        tokens = []
        if p.get("AuthToken") is not None:
            if not transit:
                raise _ipc("The AUTH token can only be specified when "
                           "in-transit encryption is enabled "
                           "(TransitEncryptionEnabled=true).")
            self._check_auth_token(p["AuthToken"])
            tokens = [p["AuthToken"]]
        sgs = p.get("SecurityGroupIds") or []
        for sg in sgs:
            if not SG_ID_RE.match(sg):
                raise _ipv("Some security group Id not recognized by EC2: "
                           "%s" % sg)
        topic = p.get("NotificationTopicArn")
        if topic is not None and not topic.startswith("arn:aws:sns:"):
            raise _ipv("Invalid value for NotificationTopicArn: %s" % topic)
        tags = p.get("Tags") or []
        if len(tags) > self.config["tag_quota"]:
            raise AwsError("TagQuotaPerResourceExceeded",
                           "The request cannot be processed because it "
                           "would cause the resource to have more than the "
                           "allowed number of tags. The maximum number of "
                           "tags permitted on a resource is %d."
                           % self.config["tag_quota"])
        port = p.get("Port") or 6379
        total = sum(s[2] + 1 for s in shards)
        self._check_quotas(total, total, len(shards))

        # ---- commit
        now = time.time()
        rg = ReplicationGroup(rg_id)
        rg.description = p["ReplicationGroupDescription"]
        rg.cluster_enabled = cluster_enabled
        rg.created = now
        rg.automatic_failover = "enabled" if af else "disabled"
        rg.multi_az = maz
        rg.tags = [dict(t) for t in tags]
        rg.cfg = {
            "Engine": engine, "EngineVersion": version,
            "CacheNodeType": node_type, "CacheParameterGroupName": pg_name,
            "PreferredMaintenanceWindow": mw, "SnapshotWindow": sw,
            "SnapshotRetentionLimit": retention, "SecurityGroupIds": sgs,
            "NotificationTopicArn": topic, "Port": port,
            "TransitEncryptionEnabled": transit,
            "AtRestEncryptionEnabled": bool(p.get("AtRestEncryptionEnabled")),
            "AuthTokens": tokens,
            "AuthTokenLastModifiedDate": now if tokens else None,
            "AutoMinorVersionUpgrade": p.get("AutoMinorVersionUpgrade",
                                             True),
            "KmsKeyId": p.get("KmsKeyId"),
            "CacheSubnetGroupName": p.get("CacheSubnetGroupName"),
        }
        azs = self._azs()
        k = 0
        for ng_id, slots, rc, paz, razs in shards:
            ng = NodeGroup(ng_id, slots)
            rg.node_groups[ng_id] = ng
            self._new_cluster(rg, ng, "primary", paz or azs[k % 3], now)
            k += 1
            for i in range(rc):
                az = razs[i] if razs and i < len(razs) else azs[k % 3]
                k += 1
                self._new_cluster(rg, ng, "replica", az, now)
        self.groups[rg.id] = rg
        self._event(rg.id, "replication-group",
                    "Replication group %s created" % rg.id)
        fail = self.config["create_fail_next"] > 0
        if fail:
            self.config["create_fail_next"] -= 1

        def done():
            if self.groups.get(rg.id) is not rg or rg.status != "creating":
                return
            if fail:
                rg.status = "create-failed"
                for ng in rg.node_groups.values():
                    ng.status = "create-failed"
                for c in self._members(rg):
                    c.status = c.node_status = "create-failed"
                self._event(rg.id, "replication-group",
                            "Failed to create replication group %s" % rg.id)
                return
            rg.status = "available"
            for ng in rg.node_groups.values():
                ng.status = "available"
            for c in self._members(rg):
                c.status = c.node_status = "available"
                self._event(c.id, "cache-cluster", "Cache cluster created")
                self._event(c.id, "cache-cluster",
                            "Added cache node 0001 in availability zone %s"
                            % c.az)
            self._event(rg.id, "replication-group",
                        "Replication group %s is now available" % rg.id)
        self.scheduler.add(self.delay("CreateReplicationGroup"), rg.id, done)
        return {"ReplicationGroup": self._rg_view(rg)}

    def _check_slots(self, ranges):
        covered = []
        for r in ranges:
            for part in r.split(","):
                m = re.fullmatch(r"\s*(\d+)-(\d+)\s*", part)
                if not m or int(m.group(1)) > int(m.group(2)) or \
                        int(m.group(2)) >= SLOTS:
                    raise _ipv("Invalid value for Slots: %s" % r)
                covered.append((int(m.group(1)), int(m.group(2))))
        covered.sort()
        nxt = 0
        for a, b in covered:
            if a != nxt:
                raise _ipv("The slots must cover the keyspace 0-16383 "
                           "without gaps or overlaps.")
            nxt = b + 1
        if nxt != SLOTS:
            raise _ipv("The slots must cover the keyspace 0-16383 without "
                       "gaps or overlaps.")

    # ------------------------------------------------------------ describe

    def _paginate(self, items, key, marker, max_records, prefix):
        if marker:
            start_key = _unb64(marker)
            if not start_key.startswith(prefix + ":"):
                raise _ipv("Invalid marker: %s" % marker)
            start_key = start_key[len(prefix) + 1:]
            items = [i for i in items if key(i) >= start_key]
        page = items[:max_records]
        out_marker = None
        if len(items) > max_records:
            out_marker = _b64("%s:%s" % (prefix, key(items[max_records])))
        return page, out_marker

    def describe_replication_groups(self, p):
        with self.lock:
            mr = _max_records(p.get("MaxRecords"), 20, 100, 100)
            if p.get("ReplicationGroupId"):
                rgs = [self._get_rg(p["ReplicationGroupId"])]
            else:
                rgs = self._sorted_groups()
            page, marker = self._paginate(rgs, lambda r: r.id,
                                          p.get("Marker"), mr, "rg")
            out = {"ReplicationGroups": [self._rg_view(r) for r in page]}
            if marker:
                out["Marker"] = marker
            return out

    def describe_cache_clusters(self, p):
        with self.lock:
            mr = _max_records(p.get("MaxRecords"), 20, 100, 100)
            if p.get("CacheClusterId"):
                c = self.clusters.get(p["CacheClusterId"].lower())
                if c is None:
                    raise AwsError("CacheClusterNotFound",
                                   "CacheCluster not found: %s"
                                   % p["CacheClusterId"])
                cs = [c]
            else:
                cs = [self.clusters[k] for k in sorted(self.clusters)]
                if p.get("ShowCacheClustersNotInReplicationGroups"):
                    cs = [c for c in cs if not c.rg_id]
            page, marker = self._paginate(cs, lambda c: c.id,
                                          p.get("Marker"), mr, "cc")
            out = {"CacheClusters": [
                self._cluster_view(c, bool(p.get("ShowCacheNodeInfo")))
                for c in page]}
            if marker:
                out["Marker"] = marker
            return out

    def describe_events(self, p):
        with self.lock:
            mr = _max_records(p.get("MaxRecords"), 20, 100, 100)
            now = time.time()
            start = p.get("StartTime")
            end = p.get("EndTime")
            dur = p.get("Duration")
            start = start.timestamp() if start else None
            end = end.timestamp() if end else None
            if dur is not None:
                if dur < 0 or dur > 14 * 24 * 60:
                    raise _ipv("The parameter Duration must be between 0 "
                               "and 20160 minutes.")
                if start is not None and end is None:
                    end = start + dur * 60
                elif start is None:
                    end = end if end is not None else now
                    start = end - dur * 60
            if start is None:
                start = (end if end is not None else now) - 3600
            if end is None:
                end = now + 1
            if end < start:
                raise _ipv("The parameter EndTime must be later than "
                           "StartTime.")
            st = p.get("SourceType")
            if st is not None and st not in (
                    "cache-cluster", "cache-parameter-group",
                    "cache-security-group", "cache-subnet-group",
                    "replication-group", "user", "user-group"):
                raise _ipv("Invalid value for parameter SourceType: %s" % st)
            sid = p.get("SourceIdentifier")
            if sid and not st:
                raise _ipc("SourceType must be specified when "
                           "SourceIdentifier is specified.")
            evs = [e for e in self.events
                   if start <= e["Date"] <= end
                   and (not st or e["SourceType"] == st)
                   and (not sid or e["SourceIdentifier"] == sid)]
            page, marker = self._paginate(
                evs, lambda e: "%012d" % e["seq"], p.get("Marker"), mr, "ev")
            out = {"Events": [{k: v for k, v in e.items() if k != "seq"}
                              for e in page]}
            if marker:
                out["Marker"] = marker
            return out

    def describe_snapshots(self, p):
        with self.lock:
            mr = _max_records(p.get("MaxRecords"), 20, 50, 50)
            snaps = [self.snapshots[k] for k in sorted(self.snapshots)]
            if p.get("SnapshotName"):
                snaps = [s for s in snaps
                         if s["SnapshotName"] == p["SnapshotName"]]
                if not snaps:
                    raise AwsError("SnapshotNotFoundFault",
                                   "Snapshot %s not found."
                                   % p["SnapshotName"])
            if p.get("ReplicationGroupId"):
                snaps = [s for s in snaps
                         if s["ReplicationGroupId"] == p["ReplicationGroupId"]]
            if p.get("CacheClusterId"):
                cid = p["CacheClusterId"]
                if cid not in self.clusters and not any(
                        s.get("CacheClusterId") == cid for s in snaps):
                    raise AwsError("CacheClusterNotFound",
                                   "CacheCluster not found: %s" % cid)
                snaps = [s for s in snaps if s.get("CacheClusterId") == cid]
            src = p.get("SnapshotSource")
            if src:
                if src not in ("system", "user"):
                    raise _ipv("Invalid value for parameter SnapshotSource: "
                               "%s. Valid values are system and user." % src)
                want = "automated" if src == "system" else "manual"
                snaps = [s for s in snaps if s["SnapshotSource"] == want]
            page, marker = self._paginate(snaps, lambda s: s["SnapshotName"],
                                          p.get("Marker"), mr, "sn")
            out = {"Snapshots": [self._snapshot_view(
                s, bool(p.get("ShowNodeGroupConfig"))) for s in page]}
            if marker:
                out["Marker"] = marker
            return out

    # ------------------------------------------------------------ modify

    def modify_replication_group(self, p):
        with self.lock:
            return self._modify(p)

    def _modify(self, p):
        rg = self._get_rg(p.get("ReplicationGroupId"))
        self._gate(rg)
        cfg = rg.cfg
        immediate = bool(p.get("ApplyImmediately", False))
        changes = {}       # applied through the modifying transition
        settings = {}      # applied at once (shown in the response)
        deferred = {}      # ApplyImmediately=false: maintenance window

        for unsupported in ("UserGroupIdsToAdd", "UserGroupIdsToRemove",
                            "LogDeliveryConfigurations",
                            "CacheSecurityGroupNames"):
            if p.get(unsupported):
                raise _ipv("The emulator does not support %s." % unsupported)

        if "ReplicationGroupDescription" in p and \
                p["ReplicationGroupDescription"] != rg.description:
            settings["Description"] = p["ReplicationGroupDescription"]

        version = cfg["EngineVersion"]
        if p.get("EngineVersion") and p["EngineVersion"] != version:
            nv = p["EngineVersion"]
            self._check_version(cfg["Engine"], nv)
            if version_tuple(nv) < version_tuple(version):
                raise _ipc("Cannot downgrade the engine version from %s to "
                           "%s. To use an earlier engine version, delete the "
                           "replication group and create it anew." %
                           (version, nv))
            (changes if immediate else deferred)["EngineVersion"] = nv
            version = nv

        new_pg = p.get("CacheParameterGroupName")
        if new_pg and new_pg != cfg["CacheParameterGroupName"]:
            pg = self._param_group(new_pg)
            if pg["family"] != family_of(cfg["Engine"], version):
                raise _ipc("Expected a parameter group of family %s but found "
                           "one of family %s" % (
                               family_of(cfg["Engine"], version),
                               pg["family"]))
            if pg["cluster_enabled"] != rg.cluster_enabled:
                raise _ipc("The parameter group %s has cluster-enabled set "
                           "to %s, which does not match the replication "
                           "group." % (new_pg, "yes" if
                                       pg["cluster_enabled"] else "no"))
            changes["CacheParameterGroupName"] = new_pg
        elif "EngineVersion" in changes or "EngineVersion" in deferred:
            cur = self._param_group(cfg["CacheParameterGroupName"])
            if cur["family"] != family_of(cfg["Engine"], version):
                if cfg["CacheParameterGroupName"].startswith("default."):
                    target = changes if "EngineVersion" in changes \
                        else deferred
                    target["CacheParameterGroupName"] = self._default_pg(
                        cfg["Engine"], version, rg.cluster_enabled)
                else:
                    raise _ipc("Expected a parameter group of family %s but "
                               "found one of family %s" % (
                                   family_of(cfg["Engine"], version),
                                   cur["family"]))

        if p.get("CacheNodeType") and p["CacheNodeType"] != \
                cfg["CacheNodeType"]:
            if not NODE_TYPE_RE.match(p["CacheNodeType"]):
                raise _ipv("Invalid value for parameter CacheNodeType: %s"
                           % p["CacheNodeType"])
            (changes if immediate else deferred)["CacheNodeType"] = \
                p["CacheNodeType"]

        if "SnapshotRetentionLimit" in p:
            v = p["SnapshotRetentionLimit"]
            if not 0 <= v <= 35:
                raise _ipv("The parameter SnapshotRetentionLimit must be "
                           "between 0 and 35.")
            if v != cfg["SnapshotRetentionLimit"]:
                settings["SnapshotRetentionLimit"] = v
        sw = p.get("SnapshotWindow")
        mw = p.get("PreferredMaintenanceWindow")
        if sw or mw:
            self._check_windows(sw or cfg["SnapshotWindow"],
                                mw or cfg["PreferredMaintenanceWindow"])
            if sw and sw != cfg["SnapshotWindow"]:
                settings["SnapshotWindow"] = sw
            if mw and mw.lower() != cfg["PreferredMaintenanceWindow"]:
                settings["PreferredMaintenanceWindow"] = mw.lower()

        if "SecurityGroupIds" in p:
            for sg in p["SecurityGroupIds"]:
                if not SG_ID_RE.match(sg):
                    raise _ipv("Some security group Id not recognized by "
                               "EC2: %s" % sg)
            if p["SecurityGroupIds"] != cfg["SecurityGroupIds"]:
                settings["SecurityGroupIds"] = list(p["SecurityGroupIds"])
        if p.get("NotificationTopicArn") is not None:
            t = p["NotificationTopicArn"]
            if t and not t.startswith("arn:aws:sns:"):
                raise _ipv("Invalid value for NotificationTopicArn: %s" % t)
            if t != cfg.get("NotificationTopicArn"):
                settings["NotificationTopicArn"] = t or None
        if p.get("NotificationTopicStatus") is not None:
            if p["NotificationTopicStatus"] not in ("active", "inactive"):
                raise _ipv("Invalid value for NotificationTopicStatus: %s"
                           % p["NotificationTopicStatus"])
            if p["NotificationTopicStatus"] != cfg.get(
                    "NotificationTopicStatus", "active"):
                settings["NotificationTopicStatus"] = \
                    p["NotificationTopicStatus"]
        if "AutoMinorVersionUpgrade" in p and \
                p["AutoMinorVersionUpgrade"] != cfg["AutoMinorVersionUpgrade"]:
            settings["AutoMinorVersionUpgrade"] = p["AutoMinorVersionUpgrade"]
        if p.get("SnapshottingClusterId"):
            if rg.cluster_enabled:
                raise _ipc("Cannot set snapshotting cluster for cluster mode "
                           "enabled replication group")
            if p["SnapshottingClusterId"] not in set(
                    c.id for c in self._members(rg)):
                raise _ipv("Cluster %s is not a member of replication group "
                           "%s." % (p["SnapshottingClusterId"], rg.id))
            if p["SnapshottingClusterId"] != rg.snapshotting_cluster_id:
                settings["SnapshottingClusterId"] = p["SnapshottingClusterId"]
        if p.get("PrimaryClusterId"):
            pc = p["PrimaryClusterId"]
            if rg.cluster_enabled:
                raise _ipc("PrimaryClusterId cannot be specified for a "
                           "replication group with cluster mode enabled.")
            if pc not in set(c.id for c in self._members(rg)):
                raise _ipv("Cluster %s is not a member of replication group "
                           "%s." % (pc, rg.id))
            if self.clusters[pc].role != "primary":
                changes["PrimaryClusterId"] = pc

        # automatic failover / Multi-AZ
        af_now = rg.automatic_failover == "enabled"
        maz_now = rg.multi_az
        af = p.get("AutomaticFailoverEnabled")
        maz = p.get("MultiAZEnabled")
        af_new = af_now if af is None else af
        maz_new = maz_now if maz is None else maz
        if rg.cluster_enabled and af is False:
            raise _ipc("Turning off automatic failover for replication group "
                       "with cluster mode enabled is not supported.")
        replicas = [len(ng.members) - 1 for ng in rg.node_groups.values()]
        if af_new and not af_now and not rg.cluster_enabled and \
                replicas[0] < 1:
            raise _ipc("When using automatic failover, there must be at "
                       "least 2 cache clusters in the replication group.")
        if maz_new and not af_new:
            raise _ipc("Multi-AZ cannot be enabled for a replication group "
                       "without automatic failover.")
        if maz_new and not maz_now and all(r < 1 for r in replicas):
            raise _ipc("Multi-AZ requires at least one replica.")
        if af_new != af_now:
            changes["AutomaticFailover"] = af_new
        if maz_new != maz_now:
            settings["MultiAZ"] = maz_new

        # AUTH
        strat = p.get("AuthTokenUpdateStrategy")
        token = p.get("AuthToken")
        if token is not None or strat is not None:
            if strat is None:
                raise _ipc("AuthTokenUpdateStrategy must be specified with "
                           "AuthToken.")
            if strat not in ("SET", "ROTATE", "DELETE"):
                raise _ipv("Invalid value for AuthTokenUpdateStrategy: %s. "
                           "Valid values are SET, ROTATE and DELETE." % strat)
            if not cfg["TransitEncryptionEnabled"]:
                raise _ipc("The AUTH token can only be modified when "
                           "in-transit encryption is enabled.")
            if strat in ("SET", "ROTATE"):
                if token is None:
                    raise _ipc("AuthToken must be specified with "
                               "AuthTokenUpdateStrategy %s." % strat)
                self._check_auth_token(token)
                if strat == "ROTATE" and not cfg["AuthTokens"]:
                    raise _ipc("Cannot rotate the AUTH token of a replication "
                               "group that has no AUTH token.")
            else:
                if token is not None:
                    raise _ipc("AuthToken must not be specified with "
                               "AuthTokenUpdateStrategy DELETE.")
                if not cfg["AuthTokens"]:
                    raise _ipc("The replication group has no AUTH token to "
                               "delete.")
            changes["Auth"] = (strat, token)

        if immediate and rg.pending:
            for k, v in rg.pending.items():
                changes.setdefault(k, v)
            rg.pending = {}

        if not changes and not settings and not deferred:
            raise _ipc("No modifications were requested.")

        # ---- commit
        for k, v in settings.items():
            if k == "Description":
                rg.description = v
            elif k == "MultiAZ":
                rg.multi_az = v
            elif k == "SnapshottingClusterId":
                rg.snapshotting_cluster_id = v
            else:
                cfg[k] = v
        rg.pending.update(deferred)
        if changes or settings:
            self._start_modify(rg, changes, "ModifyReplicationGroup")
        return {"ReplicationGroup": self._rg_view(rg)}

    def _start_modify(self, rg, changes, key):
        """available -> modifying -> available, applying `changes`."""
        rg.status = "modifying"
        rg.busy = key
        rg.inflight = {k: v for k, v in changes.items()
                       if k in ("EngineVersion", "CacheNodeType")}
        if "AutomaticFailover" in changes:
            rg.automatic_failover = "enabling" if changes[
                "AutomaticFailover"] else "disabling"
            rg.pmv["AutomaticFailoverStatus"] = "enabled" if changes[
                "AutomaticFailover"] else "disabled"
        if "Auth" in changes:
            rg.pmv["AuthTokenStatus"] = "ROTATING" if changes["Auth"][0] == \
                "ROTATE" else "SETTING"
        if "PrimaryClusterId" in changes:
            rg.pmv["PrimaryClusterId"] = changes["PrimaryClusterId"]
        if "CacheParameterGroupName" in changes:
            rg.cfg["ParameterApplyStatus"] = "applying"
        touches_nodes = bool(rg.inflight) or \
            "CacheParameterGroupName" in changes
        if touches_nodes:
            for c in self._members(rg):
                c.status = "modifying"
                if "CacheNodeType" in rg.inflight or \
                        "EngineVersion" in rg.inflight:
                    c.node_status = "modifying"
            for ng in rg.node_groups.values():
                ng.status = "modifying"
        self._event(rg.id, "replication-group",
                    "Modifying replication group %s" % rg.id)

        def done():
            if self.groups.get(rg.id) is not rg:
                return
            cfg = rg.cfg
            now = time.time()
            revert = [k for k in ("CacheNodeType", "EngineVersion")
                      if k in changes] if \
                self.config.get("revert_next_modify", 0) > 0 else []
            if revert:
                self.config["revert_next_modify"] -= 1
                for k in revert:
                    self._event(rg.id, "replication-group",
                                "Failed to modify %s of replication group "
                                "%s to %s: insufficient capacity; the "
                                "change was rolled back" % (
                                    k, rg.id, changes.pop(k)))
            for k in ("EngineVersion", "CacheNodeType",
                      "CacheParameterGroupName"):
                if k in changes:
                    cfg[k] = changes[k]
            cfg.pop("ParameterApplyStatus", None)
            if "AutomaticFailover" in changes:
                rg.automatic_failover = "enabled" if changes[
                    "AutomaticFailover"] else "disabled"
            if "Auth" in changes:
                strat, token = changes["Auth"]
                if strat == "SET":
                    cfg["AuthTokens"] = [token]
                elif strat == "ROTATE":
                    cfg["AuthTokens"] = cfg["AuthTokens"][-1:] + [token]
                else:
                    cfg["AuthTokens"] = []
                cfg["AuthTokenLastModifiedDate"] = now
            if "PrimaryClusterId" in changes:
                self._promote(rg, changes["PrimaryClusterId"])
            rg.pmv = {}
            rg.inflight = {}
            rg.busy = None
            rg.status = "available"
            for ng in rg.node_groups.values():
                ng.status = "available"
            for c in self._members(rg):
                if c.status == "modifying":
                    self._event(c.id, "cache-cluster",
                                "Cache cluster modified")
                c.status = c.node_status = "available"
            self._event(rg.id, "replication-group",
                        "Replication group %s modified" % rg.id)
        self.scheduler.add(self.delay(key), rg.id, done)

    def _promote(self, rg, cid):
        c = self.clusters[cid]
        ng = rg.node_groups[c.ng_id]
        for m in ng.members:
            self.clusters[m].role = "replica"
        c.role = "primary"
        ng.members.remove(cid)
        ng.members.insert(0, cid)

    # ------------------------------------------------------------ resharding

    def modify_shard_configuration(self, p):
        with self.lock:
            rg = self._get_rg(p.get("ReplicationGroupId"))
            if p.get("ApplyImmediately") is not True:
                raise _ipv("ApplyImmediately must be true. At present, the "
                           "only permitted value for ApplyImmediately is "
                           "true.")
            count = p.get("NodeGroupCount")
            if count is None:
                raise _ipv("The parameter NodeGroupCount must be provided "
                           "and must not be blank.")
            if not rg.cluster_enabled:
                raise _ipc("Resharding is only supported for replication "
                           "groups with cluster mode enabled.")
            self._gate(rg)
            if not 1 <= count <= 500:
                raise _ipv("The parameter NodeGroupCount must be between 1 "
                           "and 500.")
            current = list(rg.node_groups)
            remove = p.get("NodeGroupsToRemove") or []
            retain = p.get("NodeGroupsToRetain") or []
            resharding = p.get("ReshardingConfiguration") or []
            if remove and retain:
                raise _ipc("NodeGroupsToRemove and NodeGroupsToRetain cannot "
                           "both be specified.")
            if count < len(current):
                if not remove and not retain:
                    raise _ipc("Either NodeGroupsToRemove or "
                               "NodeGroupsToRetain is required when reducing "
                               "the number of node groups.")
                ids = [x.zfill(4) for x in (remove or retain)]
                bad = [x for x in ids if x not in rg.node_groups]
                if bad:
                    raise _ipv("The following node group ids are invalid: "
                               "[%s]" % ", ".join(bad))
                if remove:
                    to_remove = ids
                else:
                    to_remove = [x for x in current if x not in ids]
                if len(current) - len(set(to_remove)) != count:
                    raise _ipv("The number of node groups after removing %s "
                               "would be %d, which does not match "
                               "NodeGroupCount %d." % (
                                   ", ".join(to_remove),
                                   len(current) - len(set(to_remove)),
                                   count))
                if resharding:
                    raise _ipc("ReshardingConfiguration can only be "
                               "specified when NodeGroupCount is greater "
                               "than the current number of node groups.")
                self._start_reshard(rg, [], sorted(set(to_remove)))
            else:
                if remove or retain:
                    raise _ipc("NodeGroupsToRemove and NodeGroupsToRetain can "
                               "only be specified when NodeGroupCount is "
                               "less than the current number of node "
                               "groups.")
                add = count - len(current)
                if resharding and add == 0:
                    raise _ipc("ReshardingConfiguration can only be "
                               "specified when NodeGroupCount is greater "
                               "than the current number of node groups.")
                if resharding and len(resharding) != count:
                    raise _ipv("The number of ReshardingConfiguration "
                               "entries (%d) must equal NodeGroupCount "
                               "(%d)." % (len(resharding), count))
                rc = len(next(iter(rg.node_groups.values())).members) - 1
                nodes = sum(len(ng.members) for ng in
                            rg.node_groups.values()) + add * (rc + 1)
                self._check_quotas(add * (rc + 1), nodes, count)
                self._start_reshard(rg, [rc] * add, [])
            return {"ReplicationGroup": self._rg_view(rg)}

    def _start_reshard(self, rg, new_shards, to_remove):
        now = time.time()
        rg.status = "modifying"
        rg.busy = "ModifyReplicationGroupShardConfiguration"
        rg.pmv["Resharding"] = {"SlotMigration": {"ProgressPercentage": 0.0}}
        azs = self._azs()
        added = []
        for i, rc in enumerate(new_shards):
            ng = NodeGroup(self._next_ng_id(rg), "")
            ng.status = "creating"
            rg.node_groups[ng.id] = ng
            self._new_cluster(rg, ng, "primary", azs[i % 3], now)
            for j in range(rc):
                self._new_cluster(rg, ng, "replica", azs[(i + j + 1) % 3],
                                  now)
            added.append(ng.id)
        for ng_id in to_remove:
            rg.node_groups[ng_id].status = "deleting"
            for cid in rg.node_groups[ng_id].members:
                self.clusters[cid].status = "deleting"
        for ng in rg.node_groups.values():
            if ng.status == "available":
                ng.status = "modifying"
        self._event(rg.id, "replication-group",
                    "Resharding started for replication group %s "
                    "(adding %d, removing %d node groups)"
                    % (rg.id, len(added), len(to_remove)))

        def done():
            if self.groups.get(rg.id) is not rg:
                return
            for ng_id in to_remove:
                ng = rg.node_groups.pop(ng_id)
                for cid in ng.members:
                    self.clusters.pop(cid, None)
                    self._event(cid, "cache-cluster", "Cache cluster deleted")
            for ng, slots in zip(rg.node_groups.values(),
                                 slot_ranges(len(rg.node_groups))):
                ng.slots = slots
                ng.status = "available"
            for c in self._members(rg):
                if c.status == "creating":
                    self._event(c.id, "cache-cluster", "Cache cluster created")
                c.status = c.node_status = "available"
            rg.pmv = {}
            rg.busy = None
            rg.status = "available"
            self._event(rg.id, "replication-group",
                        "Resharding completed for replication group %s; it "
                        "now has %d node groups" % (rg.id,
                                                    len(rg.node_groups)))
        self.scheduler.add(
            self.delay("ModifyReplicationGroupShardConfiguration"), rg.id,
            done)

    # ------------------------------------------------------------ replicas

    def change_replica_count(self, p, increase):
        with self.lock:
            action = "IncreaseReplicaCount" if increase else \
                "DecreaseReplicaCount"
            rg = self._get_rg(p.get("ReplicationGroupId"))
            if p.get("ApplyImmediately") is not True:
                raise _ipv("ApplyImmediately=false is not currently "
                           "supported; ApplyImmediately must be true.")
            nrc = p.get("NewReplicaCount")
            conf = p.get("ReplicaConfiguration") or []
            rtr = [] if increase else (p.get("ReplicasToRemove") or [])
            given = [x for x in (nrc is not None, bool(conf), bool(rtr)) if x]
            if len(given) != 1:
                raise _ipc("Exactly one of NewReplicaCount, "
                           "ReplicaConfiguration%s must be specified." % (
                               "" if increase else " or ReplicasToRemove"))
            self._gate(rg)
            targets = {}  # ng_id -> new replica count
            removals = {}  # ng_id -> explicit cluster ids
            if nrc is not None:
                for ng in rg.node_groups.values():
                    targets[ng.id] = nrc
            elif conf:
                for cs in conf:
                    ng_id = (cs.get("NodeGroupId") or "").zfill(4)
                    if ng_id not in rg.node_groups:
                        raise _ipv("The node group %s does not exist in "
                                   "replication group %s."
                                   % (cs.get("NodeGroupId"), rg.id))
                    if cs.get("NewReplicaCount") is None:
                        raise _ipv("NewReplicaCount must be specified for "
                                   "node group %s." % ng_id)
                    targets[ng_id] = cs["NewReplicaCount"]
                    azs = cs.get("PreferredAvailabilityZones")
                    if azs and len(azs) != cs["NewReplicaCount"] + 1:
                        raise _ipv("The number of PreferredAvailabilityZones "
                                   "must equal NewReplicaCount plus 1.")
            else:
                members = {c.id: c for c in self._members(rg)}
                for cid in rtr:
                    c = members.get(cid)
                    if c is None:
                        raise _ipv("Cluster %s is not a member of replication "
                                   "group %s." % (cid, rg.id))
                    if c.role == "primary":
                        raise _ipv("Cannot remove the primary cluster %s; "
                                   "only replicas can be removed." % cid)
                    removals.setdefault(c.ng_id, []).append(cid)
                for ng_id, ids in removals.items():
                    targets[ng_id] = len(rg.node_groups[ng_id].members) - 1 \
                        - len(ids)
            changed = False
            af = rg.automatic_failover == "enabled"
            for ng_id, target in targets.items():
                cur = len(rg.node_groups[ng_id].members) - 1
                if not 0 <= target <= 5:
                    raise _ipv("The parameter NewReplicaCount must be between "
                               "0 and 5.")
                if increase and target < cur:
                    raise _ipv("NewReplicaCount (%d) is less than the current "
                               "number of replicas (%d) in node group %s. "
                               "Use DecreaseReplicaCount." %
                               (target, cur, ng_id))
                if not increase and target > cur:
                    raise _ipv("NewReplicaCount (%d) is greater than the "
                               "current number of replicas (%d) in node "
                               "group %s. Use IncreaseReplicaCount." %
                               (target, cur, ng_id))
                if not increase and not rg.cluster_enabled and target < 1:
                    if rg.multi_az:
                        raise _ipv("Must have at least 1 replica when "
                                   "Multi-AZ is enabled.")
                    if af:
                        raise _ipv("Must have at least 1 replica when cluster "
                                   "mode is disabled with auto failover "
                                   "enabled.")
                if target != cur:
                    changed = True
            if not changed:
                raise AwsError("NoOperationFault",
                               "The operation was not performed because no "
                               "changes were required.")
            delta = sum(t - (len(rg.node_groups[n].members) - 1)
                        for n, t in targets.items())
            if delta > 0:
                nodes = sum(len(ng.members)
                            for ng in rg.node_groups.values()) + delta
                self._check_quotas(delta, nodes, len(rg.node_groups))
            self._start_replica_change(rg, targets, removals, action)
            return {"ReplicationGroup": self._rg_view(rg)}

    def _start_replica_change(self, rg, targets, removals, action):
        now = time.time()
        rg.status = "modifying"
        rg.busy = action
        azs = self._azs()
        for ng_id, target in targets.items():
            ng = rg.node_groups[ng_id]
            cur = len(ng.members) - 1
            if target == cur:
                continue
            ng.status = "modifying"
            if target > cur:
                for i in range(target - cur):
                    self._new_cluster(rg, ng, "replica",
                                      azs[(len(ng.members)) % 3], now)
            else:
                ids = removals.get(ng_id) or [
                    m for m in reversed(ng.members)
                    if self.clusters[m].role == "replica"][:cur - target]
                for cid in ids:
                    self.clusters[cid].status = "deleting"
        self._event(rg.id, "replication-group",
                    "%s started for replication group %s" % (
                        "Adding replicas" if action == "IncreaseReplicaCount"
                        else "Removing replicas", rg.id))

        def done():
            if self.groups.get(rg.id) is not rg:
                return
            for ng in rg.node_groups.values():
                for cid in list(ng.members):
                    c = self.clusters[cid]
                    if c.status == "deleting":
                        ng.members.remove(cid)
                        del self.clusters[cid]
                        self._event(cid, "cache-cluster",
                                    "Cache cluster deleted")
                    elif c.status == "creating":
                        c.status = c.node_status = "available"
                        self._event(cid, "cache-cluster",
                                    "Cache cluster created")
                        self._event(cid, "cache-cluster",
                                    "Added cache node 0001 in availability "
                                    "zone %s" % c.az)
                ng.status = "available"
            if not rg.cluster_enabled and all(
                    len(ng.members) < 2 for ng in rg.node_groups.values()):
                rg.automatic_failover = "disabled"
                rg.multi_az = False
            rg.busy = None
            rg.status = "available"
            self._event(rg.id, "replication-group",
                        "Replication group %s now has %s" % (
                            rg.id, ", ".join(
                                "%d replica(s) in node group %s" % (
                                    len(ng.members) - 1, ng.id)
                                for ng in rg.node_groups.values())))
        self.scheduler.add(self.delay(action), rg.id, done)

    # ------------------------------------------------------------ delete

    def delete_replication_group(self, p):
        with self.lock:
            rg = self._get_rg(p.get("ReplicationGroupId"))
            if rg.status not in ("available", "create-failed") or rg.busy:
                raise _rg_state("Replication group %s has status %s which is "
                                "not valid for deletion." % (rg.id,
                                                             rg.status))
            retain = bool(p.get("RetainPrimaryCluster"))
            final = p.get("FinalSnapshotIdentifier")
            if retain:
                if rg.cluster_enabled:
                    raise _ipc("RetainPrimaryCluster is not supported for "
                               "replication groups with cluster mode "
                               "enabled.")
            if final:
                if final in self.snapshots:
                    raise AwsError("SnapshotAlreadyExistsFault",
                                   "Snapshot %s already exists." % final)
                if rg.status != "available":
                    raise _rg_state("Cannot take a final snapshot of "
                                    "replication group %s in status %s."
                                    % (rg.id, rg.status))
                snap = self._new_snapshot(rg, final, "manual")
            else:
                snap = None
            rg.status = "deleting"
            rg.busy = "DeleteReplicationGroup"
            for ng in rg.node_groups.values():
                ng.status = "deleting"
            primary = None
            for c in self._members(rg):
                if retain and c.role == "primary":
                    primary = c
                    continue
                c.status = "deleting"
            self._event(rg.id, "replication-group",
                        "Deleting replication group %s" % rg.id)
            view = self._rg_view(rg)

            def done():
                if self.groups.get(rg.id) is not rg:
                    return
                if snap is not None:
                    snap["SnapshotStatus"] = "available"
                    self._event(rg.id, "replication-group",
                                "Snapshot succeeded for snapshot with ID "
                                "'%s' of replication group with ID '%s'"
                                % (snap["SnapshotName"], rg.id))
                for c in list(self._members(rg)):
                    if c is primary:
                        c.cfg = copy.deepcopy(rg.cfg)
                        c.cfg["Port"] = rg.cfg["Port"]
                        c.rg_id = None
                        c.token = rg.token
                        c.tags = list(rg.tags)
                        continue
                    del self.clusters[c.id]
                    self._event(c.id, "cache-cluster", "Cache cluster deleted")
                del self.groups[rg.id]
                self._event(rg.id, "replication-group",
                            "Replication group %s deleted" % rg.id)
            self.scheduler.add(self.delay("DeleteReplicationGroup"), rg.id,
                               done)
            return {"ReplicationGroup": view}

    # ------------------------------------------------------------ failover

    def test_failover(self, p):
        with self.lock:
            rg = self._get_rg(p.get("ReplicationGroupId"))
            ng_id = (p.get("NodeGroupId") or "")
            if not NG_ID_RE.match(ng_id):
                raise _ipv("Invalid value for parameter NodeGroupId: %s"
                           % ng_id)
            ng = rg.node_groups.get(ng_id.zfill(4))
            if ng is None:
                raise AwsError("NodeGroupNotFoundFault",
                               "The node group %s does not exist in "
                               "replication group %s." % (ng_id, rg.id))
            if rg.automatic_failover != "enabled":
                raise _ipc("Automatic failover is not enabled for "
                           "replication group %s." % rg.id)
            if len(ng.members) < 2:
                raise _ipc("Node group %s of replication group %s has no "
                           "replica to fail over to." % (ng.id, rg.id))
            self._gate(rg, "test failover")
            now = time.time()
            window = self.config["test_failover_window_s"]
            self.failovers = [f for f in self.failovers
                              if f[0] > now - window]
            scope = [f for f in self.failovers
                     if self.config["test_failover_scope"] != "group"
                     or f[1] == rg.id]
            if len(scope) >= self.config["test_failover_limit"]:
                raise AwsError("APICallRateForCustomerExceeded",
                               "The customer has exceeded the allowed rate "
                               "of API calls. TestFailover can be called on "
                               "at most %d node groups in any rolling "
                               "24-hour period."
                               % self.config["test_failover_limit"])
            self.failovers.append((now, rg.id, ng.id))
            old = self.clusters[ng.members[0]]
            new = self.clusters[ng.members[1]]
            rg.status = "modifying"
            rg.busy = "TestFailover"
            ng.status = "modifying"
            old.status = "modifying"
            self._event(rg.id, "replication-group",
                        "Test Failover API called for node group %s" % ng.id)

            def done():
                if self.groups.get(rg.id) is not rg:
                    return
                self._promote(rg, new.id)
                msg = ("Failover from primary node %s to replica node %s "
                       "completed" % (old.id, new.id))
                self._event(old.id, "cache-cluster", msg)
                self._event(rg.id, "replication-group", msg)
                self._event(old.id, "cache-cluster",
                            "Recovering cache nodes 0001")
                self._event(old.id, "cache-cluster",
                            "Finished recovery for cache nodes 0001")
                old.status = "available"
                ng.status = "available"
                rg.busy = None
                rg.status = "available"
            self.scheduler.add(self.delay("TestFailover"), rg.id, done)
            return {"ReplicationGroup": self._rg_view(rg)}

    # ------------------------------------------------------------ tags

    def _tag_holder(self, arn):
        m = re.fullmatch(r"arn:aws[a-z-]*:elasticache:([a-z0-9-]+):(\d{12}):"
                         r"([a-z]+):(.+)", arn or "")
        if not m:
            raise AwsError("InvalidARN",
                           "The ARN %s is not valid." % arn)
        kind, name = m.group(3), m.group(4)
        if m.group(1) != self.config["region"] or \
                m.group(2) != self.config["account_id"]:
            raise AwsError("InvalidARN",
                           "The ARN %s is not valid for this account and "
                           "region." % arn)
        if kind == "replicationgroup":
            rg = self.groups.get(name)
            if rg is None:
                raise AwsError("ReplicationGroupNotFoundFault",
                               "Replication group %s not found." % name)
            if rg.status != "available":
                raise _rg_state("Cluster not in available state to perform "
                                "tagging operations.")
            return rg, "tags"
        if kind == "cluster":
            c = self.clusters.get(name)
            if c is None:
                raise AwsError("CacheClusterNotFound",
                               "CacheCluster not found: %s" % name)
            return c, "tags"
        if kind == "snapshot":
            s = self.snapshots.get(name)
            if s is None:
                raise AwsError("SnapshotNotFoundFault",
                               "Snapshot %s not found." % name)
            return s, "_tags"
        raise AwsError("InvalidARN", "The ARN %s is not valid." % arn)

    def _get_tags(self, holder, attr):
        return holder[attr] if isinstance(holder, dict) else \
            getattr(holder, attr)

    def list_tags(self, p):
        with self.lock:
            holder, attr = self._tag_holder(p.get("ResourceName"))
            return {"TagList": [dict(t) for t in
                                self._get_tags(holder, attr)]}

    def add_tags(self, p):
        with self.lock:
            holder, attr = self._tag_holder(p.get("ResourceName"))
            tags = self._get_tags(holder, attr)
            merged = {t["Key"]: t.get("Value") for t in tags}
            for t in p.get("Tags") or []:
                if not t.get("Key"):
                    raise _ipv("Tag keys must not be empty.")
                merged[t["Key"]] = t.get("Value")
            if len(merged) > self.config["tag_quota"]:
                raise AwsError("TagQuotaPerResourceExceeded",
                               "The request cannot be processed because it "
                               "would cause the resource to have more than "
                               "the allowed number of tags. The maximum "
                               "number of tags permitted on a resource is "
                               "%d." % self.config["tag_quota"])
            new = [{"Key": k, "Value": v} if v is not None else {"Key": k}
                   for k, v in merged.items()]
            tags[:] = new
            return {"TagList": [dict(t) for t in new]}


class _Detached:
    """Adapter giving a standalone (retained) cluster the endpoint API."""

    def __init__(self, c, cfg):
        self.id = c.id
        self.cfg = cfg
        self.token = getattr(c, "token", "detach")
