"""Test-facing side of the emulator: control API, fault injection, call
counters, request log, and the credential providers cachekeeper uses
outside ElastiCache: EC2 instance metadata (IMDSv2) and STS
AssumeRoleWithWebIdentity.

Control API (JSON in and out, never signed), all under /_emulator/:

  GET  health                      {"ok": true}
  GET  state                       replication groups (as DescribeReplication-
                                   Groups shows them), pending transitions
  GET  calls                       {"received": {Action: n}, "ok": {...},
                                    "error": {...}, "injected": {...}}
  POST calls/reset
  GET  requests[?action=X]         last requests: action, params (AuthToken
                                   redacted), status, error code
  POST reset                       state, faults, counters, log, vended
                                   credentials; {"config": true} also
                                   restores the default config
  GET|POST config                  see ec_state.DEFAULT_CONFIG; POST merges
  GET|POST|DELETE faults           POST adds a rule (below), DELETE clears
  POST advance                     {"replication_group_id"?}: finish pending
                                   transitions now
  POST maintenance                 {"replication_group_id"?}: run the
                                   maintenance window (apply deferred
                                   modifications)
  POST snapshot                    {"replication_group_id", "name"?}
  POST parameter-groups            {"name", "family", "cluster_enabled"?}
  GET|POST credentials             {"access_key", "secret_key",
                                    "session_token"?, "expires_in"?}
  GET|POST imds                    {"enabled", "role", "expiry_seconds",
                                    "require_token"}
  GET|POST sts                     {"duration_seconds", "expected_token",
                                    "role_arn_pattern"}

Fault rule (POST faults):
  {"action": "CreateReplicationGroup" | "*" | "IMDS" |
             "AssumeRoleWithWebIdentity",
   "type": "throttle" | "internal" | "unavailable" | "error" | "delay" |
           "drop" | "reset" | "malformed",
   "count": N (default 1; null = every matching call),
   "probability": 0..1 (default 1),
   "seed": int (draws for probability from their own generator, so a
           storm repeats the same way; default: unseeded),
   "skip": K (let the first K matching calls through),
   "delay_ms": ms (type delay; also added before any other type),
   "execute": bool (drop/reset/malformed/delay: run the action first, so
              the change happens but the client never sees a good answer;
              default false, true for delay),
   "status": int, "code": str, "message": str (type error)}
"""

import base64
import json
import os
import random
import re
import string
import threading
import time
import uuid
from urllib.parse import parse_qs

from ec_protocol import STS_XMLNS, iso, render_error
from ec_state import AwsError

FAULT_TYPES = {
    "throttle": (400, "Throttling", "Rate exceeded", True),
    "internal": (500, "InternalFailure",
                 "The request processing has failed because of an unknown "
                 "error, exception or failure.", False),
    "unavailable": (503, "ServiceUnavailable",
                    "The request has failed due to a temporary failure of "
                    "the server.", False),
}


def _rand(n, alphabet=string.ascii_uppercase + string.digits):
    return "".join(random.choice(alphabet) for _ in range(n))


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.rngs = {}          # rule id -> its generator
        self.next_id = 1

    def add(self, rule):
        rtype = rule.get("type")
        if rtype == "throttling":
            rtype = "throttle"
        if rtype not in ("throttle", "internal", "unavailable", "error",
                         "delay", "drop", "reset", "malformed"):
            raise ValueError("unknown fault type %r" % rule.get("type"))
        r = {
            "action": rule.get("action", "*"),
            "type": rtype,
            "count": rule.get("count", 1),
            "probability": float(rule.get("probability", 1.0)),
            "skip": int(rule.get("skip", 0)),
            "delay_ms": int(rule.get("delay_ms", 0)),
            "execute": bool(rule.get("execute", rtype == "delay")),
            "status": rule.get("status"),
            "code": rule.get("code"),
            "message": rule.get("message"),
            "fired": 0,
        }
        # Not in r: rules are copied (dict(r)) to answer listings.
        rng = random.Random(rule["seed"]) if "seed" in rule else random
        if rtype == "error" and not (r["status"] and r["code"]):
            raise ValueError("an error fault needs status and code")
        with self.lock:
            r["id"] = self.next_id
            self.next_id += 1
            self.rules.append(r)
            self.rngs[r["id"]] = rng
            return dict(r)

    def clear(self):
        with self.lock:
            self.rules = []
            self.rngs = {}

    def listing(self):
        with self.lock:
            return [dict(r) for r in self.rules]

    def pick(self, action):
        """The rule that fires for this call, or None."""
        with self.lock:
            for r in self.rules:
                if r["action"] not in ("*", action):
                    continue
                if r["count"] is not None and r["count"] <= 0:
                    continue
                if r["skip"] > 0:
                    r["skip"] -= 1
                    continue
                if r["probability"] < 1.0 and \
                        self.rngs[r["id"]].random() >= r["probability"]:
                    continue
                if r["count"] is not None:
                    r["count"] -= 1
                r["fired"] += 1
                return dict(r)
            return None


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.data = {"received": {}, "ok": {}, "error": {},
                         "injected": {}}

    def bump(self, kind, action):
        with self.lock:
            d = self.data[kind]
            d[action] = d.get(action, 0) + 1

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.data))


class RequestLog:
    def __init__(self, limit=2000):
        self.lock = threading.Lock()
        self.items = []
        self.limit = limit

    def add(self, entry):
        with self.lock:
            self.items.append(entry)
            if len(self.items) > self.limit:
                del self.items[: len(self.items) - self.limit]

    def clear(self):
        with self.lock:
            self.items = []

    def listing(self, action=None):
        with self.lock:
            return [dict(i) for i in self.items
                    if action is None or i.get("action") == action]


class Controller:
    """Owns everything around the Backend that tests poke at."""

    def __init__(self, backend, store, region):
        self.backend = backend
        self.store = store
        self.region = region
        self.faults = Faults()
        self.counters = Counters()
        self.log = RequestLog()
        self.imds = {"enabled": True, "role": "cachekeeper-role",
                     "expiry_seconds": 21600, "require_token": True}
        self.imds_tokens = {}
        self.imds_creds = None
        self.sts = {"duration_seconds": None, "expected_token": None,
                    "role_arn_pattern": r"^arn:aws[a-z-]*:iam::\d{12}:role/.+"}
        self.lock = threading.Lock()

    # ------------------------------------------------------------ control

    def reset(self, config=False):
        self.backend.reset(keep_config=not config)
        self.faults.clear()
        self.counters.reset()
        self.log.clear()
        self.store.purge_vended()
        with self.lock:
            self.imds_tokens = {}
            self.imds_creds = None

    def control(self, method, path, query, body):
        """Returns (status, json-able object)."""
        try:
            data = json.loads(body.decode() or "{}") if body else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(data, dict):
            return 400, {"error": "body must be a JSON object"}
        route = path[len("/_emulator/"):].strip("/")
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        b = self.backend
        try:
            if route == "health":
                return 200, {"ok": True}
            if route == "state":
                return 200, b.dump()
            if route == "calls":
                return 200, self.counters.snapshot()
            if route == "calls/reset" and method == "POST":
                self.counters.reset()
                return 200, {"ok": True}
            if route == "requests":
                if method == "DELETE":
                    self.log.clear()
                    return 200, {"ok": True}
                return 200, {"requests": self.log.listing(q.get("action"))}
            if route == "reset" and method == "POST":
                self.reset(config=bool(data.get("config")))
                return 200, {"ok": True}
            if route == "config":
                if method == "POST":
                    return 200, b.update_config(data)
                return 200, b.update_config({})
            if route == "faults":
                if method == "POST":
                    return 200, self.faults.add(data)
                if method == "DELETE":
                    self.faults.clear()
                    return 200, {"ok": True}
                return 200, {"faults": self.faults.listing()}
            if route == "advance" and method == "POST":
                n = b.advance(data.get("replication_group_id"))
                return 200, {"completed": n}
            if route == "maintenance" and method == "POST":
                started = b.run_maintenance(data.get("replication_group_id"))
                if data.get("complete"):
                    for rg in started:
                        b.advance(rg)
                return 200, {"started": started}
            if route == "snapshot" and method == "POST":
                name = b.take_snapshot(data["replication_group_id"],
                                       data.get("name"))
                return 200, {"snapshot": name}
            if route == "parameter-groups" and method == "POST":
                b.add_parameter_group(data["name"], data["family"],
                                      data.get("cluster_enabled"))
                return 200, {"ok": True}
            if route == "credentials":
                if method == "POST":
                    exp = data.get("expires_in")
                    self.store.add(data["access_key"], data["secret_key"],
                                   data.get("session_token"),
                                   time.time() + exp if exp else None,
                                   source="static")
                    return 200, {"ok": True}
                return 200, {"credentials": self.store.listing()}
            if route == "imds":
                if method == "POST":
                    with self.lock:
                        self.imds.update({k: v for k, v in data.items()
                                          if k in self.imds})
                        if "expiry_seconds" in data or "role" in data:
                            self.imds_creds = None
                with self.lock:
                    return 200, dict(self.imds, current=self.imds_creds)
            if route == "sts":
                if method == "POST":
                    with self.lock:
                        self.sts.update({k: v for k, v in data.items()
                                         if k in self.sts})
                with self.lock:
                    return 200, dict(self.sts)
        except AwsError as e:
            return 400, {"error": e.code, "message": e.message}
        except (KeyError, ValueError, TypeError) as e:
            return 400, {"error": "bad request: %s" % e}
        return 404, {"error": "no control route %s %s" % (method, path)}

    # ------------------------------------------------------------ IMDS

    def _vend(self, ttl, source):
        ak = "ASIA" + _rand(16)
        sk = base64.b64encode(os.urandom(30)).decode()
        token = base64.b64encode(os.urandom(96)).decode()
        expires = time.time() + ttl
        self.store.add(ak, sk, token, expires, source=source)
        return {"AccessKeyId": ak, "SecretAccessKey": sk, "Token": token,
                "Expiration": expires, "LastUpdated": time.time()}

    def imds_request(self, method, path, headers):
        """Returns (status, content_type, body bytes, extra headers)."""
        h = {k.lower(): v for k, v in headers}
        with self.lock:
            cfg = dict(self.imds)
        if not cfg["enabled"]:
            return 404, "text/plain", b"", {}
        if path == "/latest/api/token":
            if method != "PUT":
                return 405, "text/plain", b"", {"Allow": "OPTIONS, PUT"}
            if "x-forwarded-for" in h:
                return 403, "text/plain", b"Forbidden", {}
            ttl = h.get("x-aws-ec2-metadata-token-ttl-seconds")
            if ttl is None or not ttl.strip().isdigit() or \
                    not 1 <= int(ttl) <= 21600:
                return 400, "text/plain", b"Bad Request", {}
            token = base64.urlsafe_b64encode(os.urandom(42)).decode()
            with self.lock:
                now = time.time()
                self.imds_tokens = {k: v for k, v in self.imds_tokens.items()
                                    if v > now}
                self.imds_tokens[token] = now + int(ttl)
            return 200, "text/plain", token.encode(), {
                "X-Aws-Ec2-Metadata-Token-Ttl-Seconds": str(int(ttl))}
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"", {"Allow": "OPTIONS, GET, HEAD"}
        tok = h.get("x-aws-ec2-metadata-token")
        with self.lock:
            valid = tok is not None and self.imds_tokens.get(tok, 0) > \
                time.time()
        if tok is not None and not valid:
            return 401, "text/plain", b"Unauthorized", {}
        if cfg["require_token"] and not valid:
            return 401, "text/plain", b"Unauthorized", {}
        role = cfg["role"]
        base = "/latest/meta-data/iam/security-credentials"
        if path in (base, base + "/"):
            return 200, "text/plain", role.encode(), {}
        if path.startswith(base + "/"):
            if path[len(base) + 1:].rstrip("/") != role:
                return 404, "text/plain", b"Not Found", {}
            with self.lock:
                cur = self.imds_creds
                ttl = float(cfg["expiry_seconds"])
                margin = min(300.0, ttl * 0.2)
                if cur is None or time.time() >= cur["Expiration"] - margin:
                    cur = self._vend(ttl, "imds")
                    self.imds_creds = cur
            doc = {"Code": "Success",
                   "LastUpdated": iso(cur["LastUpdated"])[:19] + "Z",
                   "Type": "AWS-HMAC",
                   "AccessKeyId": cur["AccessKeyId"],
                   "SecretAccessKey": cur["SecretAccessKey"],
                   "Token": cur["Token"],
                   "Expiration": iso(cur["Expiration"])[:19] + "Z"}
            return 200, "text/plain", json.dumps(doc, indent=2).encode(), {}
        if path == "/latest/meta-data/placement/region":
            return 200, "text/plain", self.region.encode(), {}
        if path == "/latest/meta-data/placement/availability-zone":
            return 200, "text/plain", (self.region + "a").encode(), {}
        if path == "/latest/meta-data/instance-id":
            return 200, "text/plain", b"i-0123456789abcdef0", {}
        if path == "/latest/dynamic/instance-identity/document":
            doc = {"accountId": self.backend.config["account_id"],
                   "region": self.region,
                   "availabilityZone": self.region + "a",
                   "instanceId": "i-0123456789abcdef0",
                   "instanceType": "t3.micro", "architecture": "x86_64"}
            return 200, "application/json", json.dumps(doc).encode(), {}
        return 404, "text/plain", b"Not Found", {}

    # ------------------------------------------------------------ STS

    def sts_assume_role_with_web_identity(self, params, request_id):
        """Returns (status, body bytes)."""
        def err(status, code, msg):
            return status, render_error(code, msg, request_id, sender=True,
                                        xmlns=STS_XMLNS)
        missing = [n for n in ("RoleArn", "RoleSessionName",
                               "WebIdentityToken") if not params.get(n)]
        if missing:
            return err(400, "ValidationError",
                       "%d validation error(s) detected: %s" % (
                           len(missing), "; ".join(
                               "Value null at '%s%s' failed to satisfy "
                               "constraint: Member must not be null"
                               % (n[0].lower(), n[1:]) for n in missing)))
        with self.lock:
            cfg = dict(self.sts)
        if not re.match(cfg["role_arn_pattern"], params["RoleArn"]):
            return err(400, "ValidationError",
                       "%s is invalid" % params["RoleArn"])
        if not re.fullmatch(r"[\w+=,.@-]{2,64}", params["RoleSessionName"]):
            return err(400, "ValidationError",
                       "1 validation error detected: Value '%s' at "
                       "'roleSessionName' failed to satisfy constraint: "
                       "Member must satisfy regular expression pattern: "
                       "[\\w+=,.@-]*" % params["RoleSessionName"])
        dur = params.get("DurationSeconds")
        if dur is not None:
            if not str(dur).isdigit() or not 900 <= int(dur) <= 43200:
                return err(400, "ValidationError",
                           "1 validation error detected: Value '%s' at "
                           "'durationSeconds' failed to satisfy constraint: "
                           "Member must have value between 900 and 43200"
                           % dur)
            dur = int(dur)
        else:
            dur = 3600
        if cfg["expected_token"] is not None and \
                params["WebIdentityToken"] != cfg["expected_token"]:
            return err(403, "AccessDenied",
                       "Not authorized to perform "
                       "sts:AssumeRoleWithWebIdentity")
        if cfg["duration_seconds"]:
            dur = float(cfg["duration_seconds"])
        creds = self._vend(dur, "sts")
        role_arn = params["RoleArn"]
        role_name = role_arn.rsplit("/", 1)[-1]
        account = role_arn.split(":")[4]
        session = params["RoleSessionName"]
        role_id = "AROA" + _rand(17)
        body = (
            '<AssumeRoleWithWebIdentityResponse xmlns="%s">\n'
            "  <AssumeRoleWithWebIdentityResult>\n"
            "    <SubjectFromWebIdentityToken>system:serviceaccount:"
            "cachekeeper:cachekeeper</SubjectFromWebIdentityToken>\n"
            "    <Audience>sts.amazonaws.com</Audience>\n"
            "    <AssumedRoleUser>\n"
            "      <Arn>arn:aws:sts::%s:assumed-role/%s/%s</Arn>\n"
            "      <AssumedRoleId>%s:%s</AssumedRoleId>\n"
            "    </AssumedRoleUser>\n"
            "    <Credentials>\n"
            "      <SessionToken>%s</SessionToken>\n"
            "      <SecretAccessKey>%s</SecretAccessKey>\n"
            "      <Expiration>%s</Expiration>\n"
            "      <AccessKeyId>%s</AccessKeyId>\n"
            "    </Credentials>\n"
            "    <Provider>arn:aws:iam::%s:oidc-provider/emulator</Provider>\n"
            "  </AssumeRoleWithWebIdentityResult>\n"
            "  <ResponseMetadata>\n"
            "    <RequestId>%s</RequestId>\n"
            "  </ResponseMetadata>\n"
            "</AssumeRoleWithWebIdentityResponse>\n") % (
                STS_XMLNS, account, role_name, session, role_id, session,
                creds["Token"], creds["SecretAccessKey"],
                iso(creds["Expiration"])[:19] + "Z", creds["AccessKeyId"],
                account, request_id)
        return 200, body.encode()


def new_request_id():
    return str(uuid.uuid4())
