#!/usr/bin/python3
"""AWS-faithful ElastiCache emulator for cachekeeper's tests.

Run with Debian's interpreter (it needs Debian's python3-botocore):

    /usr/bin/python3 tests/emulator/elasticache_emulator.py --port 0

The first line on stdout is the TCP port chosen (flushed), so a test can
start it with --port 0 and read the port.  SIGTERM / SIGINT stop it.

Layout
    elasticache_emulator.py  this entry point (options, start, stop)
    ec_protocol.py           Query protocol wire format, driven by botocore's
                             ElastiCache 2015-02-02 service model
    ec_state.py              state, validation rules, async transitions
    ec_auth.py               SigV4 verification through botocore's signer
    ec_http.py               HTTP server, routing, fault injection
    ec_control.py            control API, faults, counters, IMDSv2, STS

What is faithful
  * The wire format.  Request parameters are decoded, and responses
    encoded, from botocore's service model: element names, nesting, list
    member names (<MemberClusters><ClusterId>, <Tags><Tag>,
    <SecurityGroups><member>), result wrappers, ResponseMetadata/RequestId,
    ISO 8601 timestamps.  Errors are <ErrorResponse><Error><Type><Code>
    <Message></Error><RequestId> with the HTTP status the model gives each
    fault (ReplicationGroupNotFoundFault 404, CacheClusterNotFound 404,
    NodeGroupNotFoundFault 404, the rest 400).  The real AWS CLI parses
    every response (tests/emulator/test_awscli.py).
  * Signature Version 4, verified with botocore's SigV4Auth against the
    configured credentials (and session tokens), region taken from the
    credential scope, service "elasticache".  Missing/incomplete/bad
    signatures, unknown keys, expired session credentials and clock skew
    get the AWS error codes.
  * Actions: CreateReplicationGroup, DescribeReplicationGroups,
    ModifyReplicationGroup, ModifyReplicationGroupShardConfiguration,
    IncreaseReplicaCount, DecreaseReplicaCount, DeleteReplicationGroup,
    DescribeCacheClusters, DescribeEvents, ListTagsForResource,
    AddTagsToResource, DescribeSnapshots, TestFailover.
  * Naming: node groups "0001".., member clusters "<rg>-001" (cluster mode
    disabled) and "<rg>-0001-001" (enabled); ids stored lowercase.
  * Asynchronous statuses: creating -> available, modifying -> available,
    snapshotting, deleting -> gone (then ReplicationGroupNotFoundFault);
    node groups and member clusters move with their group.
  * The state gate: a mutating call while the group, a node group or a
    member cluster is not "available" (including while another
    modification runs) fails with InvalidReplicationGroupState; tagging
    calls too ("Cluster not in available state to perform tagging
    operations.").
  * Rules: automatic failover needs a replica (cluster mode disabled) and
    cannot be turned off with cluster mode enabled; Multi-AZ needs
    automatic failover; windows (60 minutes minimum, snapshot window
    overlapping the maintenance window); SnapshotRetentionLimit 0..35;
    NumCacheClusters 1..6, ReplicasPerNodeGroup 0..5, NumNodeGroups 1..500
    plus the shard/node/cluster quotas (NodeGroupsPerReplicationGroupQuota-
    Exceeded, NodeQuotaForClusterExceeded, ClusterQuotaForCustomerExceeded);
    engine downgrade and unknown versions; parameter group family and
    cluster-enabled mismatch; AUTH token constraints and strategies;
    "No modifications were requested." (InvalidParameterCombination);
    ApplyImmediately=false defers CacheNodeType/EngineVersion to the
    maintenance window (shown in the member clusters'
    PendingModifiedValues); ApplyImmediately must be true for resharding
    and replica count changes; NoOperationFault; TestFailover limits and
    its documented events; MaxRecords 20..100 (20..50 for snapshots) with
    Marker pagination; DescribeEvents defaults to the last hour.

What is simplified
  * One cache node ("0001") per cache cluster; no VPC, subnet group, user
    group, global datastore, log delivery, data tiering or outposts.
    Parameters for those are ignored or rejected with InvalidParameterValue
    saying the emulator does not support them.
  * Endpoints are synthetic DNS names, or --node-address for all of them.
  * Slot migration completes in one step at the end of the transition;
    removed replicas are the highest numbered ones unless ReplicasToRemove
    names them; new shards get the replica count of the first shard.
  * Exact error message texts are AWS's where they are known from public
    reports, plausible otherwise; codes and HTTP statuses are the model's.
  * Settings that do not touch nodes (windows, retention, security groups,
    topic, Multi-AZ, description) show the new value at once; node type,
    engine version, parameter group, failover and AUTH changes show at the
    end of the "modifying" transition.
  * Custom cache parameter groups must be registered through the control
    API; "default.<family>[.cluster.on]" always exist.

Control API, fault injection, IMDSv2 and STS: see ec_control.py.
Per action transition delays: --delay-ms (default 300), the environment
(ECEMU_DELAY_MS, ECEMU_DELAY_MS_<Action>, e.g.
ECEMU_DELAY_MS_CreateReplicationGroup=2000; -1 holds the transition until
POST /_emulator/advance), or POST /_emulator/config.
"""

import argparse
import json
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import ec_auth  # noqa: E402
from ec_control import Controller  # noqa: E402
from ec_http import EmulatorServer  # noqa: E402
from ec_state import Backend  # noqa: E402

DEFAULT_ACCESS_KEY = "AKIDEXAMPLE"
DEFAULT_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def parse_args(argv):
    ap = argparse.ArgumentParser(description="ElastiCache emulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0,
                    help="TCP port, 0 = pick one (printed first on stdout)")
    ap.add_argument("--imds-port", type=int, default=None,
                    help="also serve everything (IMDS, STS, control) on "
                         "this port; 0 = pick one (printed as "
                         "'imds-port N' on the second stdout line)")
    ap.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    ap.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    ap.add_argument("--session-token", default=None,
                    help="require this X-Amz-Security-Token with the key")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account-id", default="123456789012")
    ap.add_argument("--delay-ms", type=int, default=None,
                    help="default transition delay (300)")
    ap.add_argument("--node-address", default=None,
                    help="use this address for every endpoint")
    ap.add_argument("--config", default=None,
                    help="JSON object merged into the config at start")
    ap.add_argument("--imds-role", default="cachekeeper-role")
    ap.add_argument("--imds-expiry-seconds", type=float, default=21600)
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when stdin closes (the parent died)")
    ap.add_argument("--verbose", action="store_true")
    return ap.parse_args(argv)


def build(args):
    config = {"region": args.region, "account_id": args.account_id}
    delays = {}
    env_default = os.environ.get("ECEMU_DELAY_MS")
    if env_default not in (None, ""):
        config["delay_ms"] = int(env_default)
    for k, v in os.environ.items():
        if k.startswith("ECEMU_DELAY_MS_") and v != "":
            delays[k[len("ECEMU_DELAY_MS_"):]] = int(v)
    if args.delay_ms is not None:
        config["delay_ms"] = args.delay_ms
    if args.node_address:
        config["node_address"] = args.node_address
    backend = Backend(config)
    if delays:
        backend.update_config({"delays": delays})
    if args.config:
        backend.update_config(json.loads(args.config))
    store = ec_auth.CredentialStore()
    store.add(args.access_key, args.secret_key, args.session_token)
    ctl = Controller(backend, store, args.region)
    ctl.imds["role"] = args.imds_role
    ctl.imds["expiry_seconds"] = args.imds_expiry_seconds
    return ctl


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ctl = build(args)
    servers = [EmulatorServer((args.host, args.port), ctl, args.verbose)]
    print(servers[0].server_address[1], flush=True)
    if args.imds_port is not None:
        servers.append(EmulatorServer((args.host, args.imds_port), ctl,
                                      args.verbose))
        print("imds-port %d" % servers[1].server_address[1], flush=True)
    threads = []
    for srv in servers:
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        threads.append(t)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.wait(0.5):
        pass
    for srv in servers:
        srv.shutdown()
        srv.server_close()
    ctl.backend.scheduler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
