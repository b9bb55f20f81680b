"""SigV4 verification for the emulator, done with botocore's own signer.

The incoming request is rebuilt as a botocore AWSRequest holding exactly
the headers the client listed in SignedHeaders, the same method, path,
query and body; botocore's SigV4Auth computes the canonical request,
string to sign and signature with the secret of the access key found in
the credential scope, and the result is compared with the client's.

The payload hash is always computed from the body actually received (as
AWS does for services other than S3): a client that sends an
x-amz-content-sha256 header that does not match its body fails.

Errors follow the AWS common errors: MissingAuthenticationToken (403),
IncompleteSignature (400, as documented), InvalidClientTokenId (403),
ExpiredToken (403), SignatureDoesNotMatch (403), RequestExpired (400,
more than 15 minutes of clock skew).
"""

import datetime
import hmac
import re
import threading
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ec_state import AwsError

SKEW_LIMIT_S = 15 * 60


class CredentialStore:
    """Access keys the emulator accepts: static ones and vended ones."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}

    def add(self, access_key, secret_key, token=None, expires=None,
            source="static"):
        with self.lock:
            self.keys[access_key] = {"secret_key": secret_key,
                                     "token": token, "expires": expires,
                                     "source": source}

    def get(self, access_key):
        with self.lock:
            return self.keys.get(access_key)

    def listing(self):
        with self.lock:
            return [dict(v, access_key=k) for k, v in self.keys.items()]

    def purge_vended(self):
        with self.lock:
            self.keys = {k: v for k, v in self.keys.items()
                         if v["source"] == "static"}


class _Signer(SigV4Auth):
    def canonical_request(self, request):
        cr = [request.method.upper()]
        cr.append(self._normalize_url_path(_path_of(request.url)))
        cr.append(self.canonical_query_string(request))
        headers_to_sign = self.headers_to_sign(request)
        cr.append(self.canonical_headers(headers_to_sign) + "\n")
        cr.append(self.signed_headers(headers_to_sign))
        cr.append(self.payload(request))
        return "\n".join(cr)


def _path_of(url):
    rest = url.split("://", 1)[1]
    slash = rest.find("/")
    if slash < 0:
        return "/"
    return rest[slash:].split("?", 1)[0] or "/"


_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$", re.S)


def _parse_authorization(value):
    m = _AUTH_RE.match(value.strip())
    if not m:
        return None, None
    parts = {}
    for item in m.group(1).split(","):
        k, _, v = item.strip().partition("=")
        if k:
            parts[k.strip()] = v.strip()
    return "AWS4-HMAC-SHA256", parts


def verify(method, target, headers, body, store, service, now=None):
    """Verify a SigV4 request. Returns the credential record.

    headers: list of (name, value) as received.
    target: the raw request target (path and query) as received.
    """
    now = time.time() if now is None else now
    hmap = {}
    for k, v in headers:
        hmap.setdefault(k.lower(), []).append(v)
    auth = (hmap.get("authorization") or [None])[0]
    if not auth:
        if "X-Amz-Algorithm=" in target or "X-Amz-Signature=" in target:
            raise AwsError("IncompleteSignature",
                           "Query string (presigned) authentication is not "
                           "supported by this emulator.", 400)
        raise AwsError("MissingAuthenticationToken",
                       "Request is missing Authentication Token", 403)
    algo, parts = _parse_authorization(auth)
    if algo is None:
        raise AwsError("IncompleteSignature",
                       "Unsupported AWS 'algorithm': '%s'. Only "
                       "AWS4-HMAC-SHA256 is supported." %
                       auth.split(" ", 1)[0], 400)
    missing = []
    for need in ("Credential", "Signature", "SignedHeaders"):
        if not parts.get(need):
            missing.append("Authorization header requires '%s' parameter."
                           % need)
    amz_date = (hmap.get("x-amz-date") or [None])[0]
    if not amz_date:
        missing.append("Authorization header requires existence of either "
                       "a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise AwsError("IncompleteSignature", " ".join(missing) +
                       " Authorization=%s" % auth, 400)
    cred = parts["Credential"].split("/")
    if len(cred) != 5 or cred[4] != "aws4_request":
        raise AwsError("IncompleteSignature",
                       "Credential should be scoped to a valid region, "
                       "service and aws4_request terminator. Credential=%s"
                       % parts["Credential"], 400)
    access_key, scope_date, region, scope_service, _ = cred
    signed = [h.strip().lower() for h in parts["SignedHeaders"].split(";")]
    if "host" not in signed:
        raise AwsError("IncompleteSignature",
                       "'Host' or ':authority' must be a 'SignedHeader' in "
                       "the AWS Authorization.", 400)
    try:
        ts = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        raise AwsError("IncompleteSignature",
                       "Date must be in ISO-8601 'basic format'. Got '%s'."
                       % amz_date, 400)

    record = store.get(access_key)
    if record is None:
        raise AwsError("InvalidClientTokenId",
                       "The security token included in the request is "
                       "invalid.", 403)
    token = (hmap.get("x-amz-security-token") or [None])[0]
    if record["token"] is not None or token is not None:
        if token != record["token"]:
            raise AwsError("InvalidClientTokenId",
                           "The security token included in the request is "
                           "invalid.", 403)
    if record["expires"] is not None and now >= record["expires"]:
        raise AwsError("ExpiredToken",
                       "The security token included in the request is "
                       "expired", 403)
    if scope_service != service:
        raise AwsError("SignatureDoesNotMatch",
                       "Credential should be scoped to correct service: "
                       "'%s'. " % service, 403)
    if scope_date != amz_date[:8]:
        raise AwsError("SignatureDoesNotMatch",
                       "Date in Credential scope does not match YYYYMMDD "
                       "from ISO-8601 version of date from HTTP: '%s' != "
                       "'%s', from '%s'." % (scope_date, amz_date[:8],
                                             amz_date), 403)
    if abs(now - ts) > SKEW_LIMIT_S:
        raise AwsError("RequestExpired",
                       "Request has expired. Timestamp date is %s" % amz_date,
                       400)

    hh = HTTPHeaders()
    for name in signed:
        for v in hmap.get(name, []):
            hh[name] = v
    host = (hmap.get("host") or ["localhost"])[0]
    req = AWSRequest(method=method, url="http://%s%s" % (host, target),
                     data=body, headers=hh)
    req.context["timestamp"] = amz_date
    signer = _Signer(Credentials(access_key, record["secret_key"],
                                 record["token"]), scope_service, region)
    canonical = signer.canonical_request(req)
    sts = signer.string_to_sign(req, canonical)
    expected = signer.signature(sts, req)
    if not hmac.compare_digest(expected, parts["Signature"]):
        raise AwsError("SignatureDoesNotMatch",
                       "The request signature we calculated does not match "
                       "the signature you provided. Check your AWS Secret "
                       "Access Key and signing method. Consult the service "
                       "documentation for details.", 403)
    return dict(record, access_key=access_key, region=region)
