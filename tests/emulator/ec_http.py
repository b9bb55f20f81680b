"""HTTP layer of the emulator: one ThreadingHTTPServer serving

  POST|GET /                 the ElastiCache Query API (SigV4 verified) and
                             STS AssumeRoleWithWebIdentity (unsigned, as AWS)
  *        /latest/...       EC2 instance metadata (IMDSv2)
  *        /_emulator/...    the control API (ec_control)

HTTP/1.1 with keep-alive, Content-Length always set, chunked request
bodies accepted.  Fault injection (throttling, 5xx, delays, dropped or
reset connections, malformed XML) is applied here, after authentication,
so a wrong signature is reported as such even while faults are armed.
"""

import json
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import ec_auth
import ec_protocol
from ec_control import FAULT_TYPES, new_request_id
from ec_state import AwsError

HANDLERS = {
    "CreateReplicationGroup":
        lambda b, p: b.create_replication_group(p),
    "DescribeReplicationGroups":
        lambda b, p: b.describe_replication_groups(p),
    "ModifyReplicationGroup":
        lambda b, p: b.modify_replication_group(p),
    "ModifyReplicationGroupShardConfiguration":
        lambda b, p: b.modify_shard_configuration(p),
    "IncreaseReplicaCount":
        lambda b, p: b.change_replica_count(p, True),
    "DecreaseReplicaCount":
        lambda b, p: b.change_replica_count(p, False),
    "DeleteReplicationGroup":
        lambda b, p: b.delete_replication_group(p),
    "DescribeCacheClusters":
        lambda b, p: b.describe_cache_clusters(p),
    "DescribeEvents":
        lambda b, p: b.describe_events(p),
    "ListTagsForResource":
        lambda b, p: b.list_tags(p),
    "AddTagsToResource":
        lambda b, p: b.add_tags(p),
    "DescribeSnapshots":
        lambda b, p: b.describe_snapshots(p),
    "CreateSnapshot":
        lambda b, p: b.create_snapshot(p),
    "TestFailover":
        lambda b, p: b.test_failover(p),
}

API_VERSIONS = ("2015-02-02",)
STS_ACTIONS = ("AssumeRoleWithWebIdentity",)
REDACT = ("AuthToken", "WebIdentityToken")


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, controller, verbose=False):
        super().__init__(addr, Handler)
        self.ctl = controller
        self.backend = controller.backend
        self.verbose = verbose


class _Drop(Exception):
    def __init__(self, reset):
        super().__init__()
        self.reset = reset


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmazonWebServices"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("ecemu: %s - %s\n" % (self.address_string(),
                                                    fmt % args))

    # --------------------------------------------------------- plumbing

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n",
                                                             b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body, ctype="text/xml", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self, reset):
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if reset:
            try:
                self.connection.close()
            except OSError:
                pass

    def _dispatch(self):
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self._send(400, b"bad request body", "text/plain")
            return
        try:
            if path.startswith("/_emulator/"):
                status, obj = self.server.ctl.control(self.command, path,
                                                      query, body)
                self._send(status, (json.dumps(obj, indent=1, default=str)
                                    + "\n").encode(), "application/json")
            elif path.startswith("/latest/"):
                self._imds(path)
            else:
                self._query_api(path, query, body)
        except _Drop as d:
            self._drop(d.reset)

    # --------------------------------------------------------- IMDS

    def _imds(self, path):
        ctl = self.server.ctl
        fault = ctl.faults.pick("IMDS")
        if fault:
            ctl.counters.bump("injected", "IMDS")
            if fault["delay_ms"]:
                time.sleep(fault["delay_ms"] / 1000.0)
            t = fault["type"]
            if t in ("drop", "reset"):
                raise _Drop(t == "reset")
            if t in FAULT_TYPES or t == "error":
                st = fault["status"] or FAULT_TYPES.get(t, (500,))[0]
                self._send(st, b"", "text/plain")
                return
            if t == "malformed":
                self._send(200, b'{"Code": "Success", "AccessKeyId": ',
                           "text/plain")
                return
        ctl.counters.bump("received", "IMDS")
        status, ctype, body, extra = ctl.imds_request(
            self.command, path, list(self.headers.items()))
        self._send(status, body, ctype, extra)

    # --------------------------------------------------------- Query API

    def _error(self, rid, err, action=None, log=None):
        body = ec_protocol.render_error(err.code, err.message, rid,
                                        sender=err.sender)
        self._send(err.status, body, "text/xml", {"x-amzn-RequestId": rid})
        if log is not None:
            log.update(status=err.status, code=err.code)

    def _query_api(self, path, query, body):
        ctl = self.server.ctl
        backend = self.server.backend
        rid = new_request_id()
        fields = {}
        try:
            if query:
                fields.update(parse_qsl(query, keep_blank_values=True))
            ctype = (self.headers.get("Content-Type") or "").lower()
            if self.command == "POST" and body and \
                    ("x-www-form-urlencoded" in ctype or not ctype):
                fields.update(parse_qsl(body.decode("utf-8"),
                                        keep_blank_values=True))
        except UnicodeDecodeError:
            self._error(rid, AwsError("MalformedQueryString",
                                      "The query string is not valid UTF-8.",
                                      404))
            return
        action = fields.get("Action")
        entry = {"time": time.time(), "request_id": rid, "action": action,
                 "params": {k: ("<redacted>" if k.split(".")[-1] in REDACT
                                else v) for k, v in fields.items()},
                 "method": self.command, "path": path}
        try:
            self._query_api_inner(ctl, backend, rid, path, query, body,
                                  fields, action, entry)
        finally:
            if "status" in entry:
                ctl.log.add(entry)

    def _query_api_inner(self, ctl, backend, rid, path, query, body, fields,
                         action, entry):
        if action in STS_ACTIONS:
            ctl.counters.bump("received", action)
            fault = ctl.faults.pick(action)
            if fault and self._apply_pre_fault(fault, action, rid, entry,
                                               execute=None):
                return
            status, out = ctl.sts_assume_role_with_web_identity(fields, rid)
            ctl.counters.bump("ok" if status == 200 else "error", action)
            entry.update(status=status)
            self._send(status, out, "text/xml", {"x-amzn-RequestId": rid})
            return

        try:
            cred = ec_auth.verify(self.command, self.path,
                                  list(self.headers.items()), body,
                                  ctl.store, "elasticache")
        except AwsError as e:
            ctl.counters.bump("error", action or "-")
            self._error(rid, e, log=entry)
            return
        entry["access_key"] = cred["access_key"]
        if not action:
            self._error(rid, AwsError("MissingAction",
                                      "Could not find operation for "
                                      "version %s" % fields.get("Version"),
                                      400), log=entry)
            return
        version = fields.get("Version")
        op = ec_protocol.operation(action)
        if version is None:
            self._error(rid, AwsError("MissingParameter",
                                      "The request must contain the "
                                      "parameter Version", 400), log=entry)
            return
        if op is None or action not in HANDLERS or \
                version not in API_VERSIONS:
            self._error(rid, AwsError("InvalidAction",
                                      "Could not find operation %s for "
                                      "version %s" % (action, version), 400),
                        log=entry)
            return
        ctl.counters.bump("received", action)

        fault = ctl.faults.pick(action)
        if fault and not fault["execute"]:
            if self._apply_pre_fault(fault, action, rid, entry, execute=None):
                return

        status, out, err = self._execute(backend, op, action, fields, rid)

        if fault and fault["execute"]:
            ctl.counters.bump("injected", action)
            if fault["delay_ms"]:
                time.sleep(fault["delay_ms"] / 1000.0)
            t = fault["type"]
            entry["fault"] = t
            if t in ("drop", "reset"):
                entry.update(status=0, code="dropped-after-execute")
                ctl.counters.bump("ok" if err is None else "error", action)
                raise _Drop(t == "reset")
            if t == "malformed":
                entry.update(status=200, code="malformed-after-execute")
                ctl.counters.bump("ok" if err is None else "error", action)
                self._send(200, out[: max(1, len(out) // 2)] + b"<<<&",
                           "text/xml", {"x-amzn-RequestId": rid})
                return
            if t in FAULT_TYPES or t == "error":
                ctl.counters.bump("ok" if err is None else "error", action)
                self._send_fault(fault, rid, entry)
                return
        ctl.counters.bump("ok" if err is None else "error", action)
        entry.update(status=status, code=err)
        self._send(status, out, "text/xml", {"x-amzn-RequestId": rid})

    def _send_fault(self, fault, rid, entry):
        t = fault["type"]
        if t == "error":
            status, code, msg, sender = (int(fault["status"]), fault["code"],
                                         fault["message"] or fault["code"],
                                         int(fault["status"]) < 500)
        else:
            status, code, msg, sender = FAULT_TYPES[t]
            if fault["message"]:
                msg = fault["message"]
        self._error(rid, AwsError(code, msg, status, sender), log=entry)
        entry["fault"] = t

    def _apply_pre_fault(self, fault, action, rid, entry, execute):
        """Faults that replace the action. True if the response is sent."""
        ctl = self.server.ctl
        ctl.counters.bump("injected", action)
        if fault["delay_ms"]:
            time.sleep(fault["delay_ms"] / 1000.0)
        t = fault["type"]
        if t == "delay":
            return False
        entry["fault"] = t
        if t in ("drop", "reset"):
            entry.update(status=0, code="dropped")
            raise _Drop(t == "reset")
        if t == "malformed":
            entry.update(status=200, code="malformed")
            self._send(200, ('<%sResponse xmlns="%s"><%sResult><Replic'
                             % (action, ec_protocol.EC_XMLNS, action))
                       .encode(), "text/xml", {"x-amzn-RequestId": rid})
            return True
        self._send_fault(fault, rid, entry)
        return True

    def _execute(self, backend, op, action, fields, rid):
        """Run the action. Returns (status, body, error code or None)."""
        try:
            params = ec_protocol.decode_params(op, fields)
            for req in op.input_shape.required_members:
                v = params.get(req)
                if v is None or v == "":
                    raise AwsError("InvalidParameterValue",
                                   "The parameter %s must be provided and "
                                   "must not be blank." % req)
            result = HANDLERS[action](backend, params)
            return 200, ec_protocol.render_result(op, result, rid), None
        except ec_protocol.ParamError as e:
            err = AwsError(e.code, e.message)
        except AwsError as e:
            err = e
        except Exception as e:  # an emulator bug: say so, like AWS would
            import traceback
            traceback.print_exc()
            err = AwsError("InternalFailure",
                           "Emulator error: %s: %s" % (type(e).__name__, e),
                           500, sender=False)
        return err.status, ec_protocol.render_error(
            err.code, err.message, rid, sender=err.sender), err.code
