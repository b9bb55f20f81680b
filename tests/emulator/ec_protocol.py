"""AWS Query protocol wire layer for the ElastiCache emulator.

Everything here is driven by botocore's own service model for ElastiCache
2015-02-02 (Debian's python3-botocore), so request parameter names and the
element names, nesting and list member names of the XML responses are the
ones real clients (the AWS CLI, the SDKs, cachekeeper) expect:

* decode_params(): turns the flat form fields of a Query request
  ("NodeGroupConfiguration.NodeGroupConfiguration.1.ReplicaCount=2") into
  nested Python values typed by the operation's input shape (int, bool,
  lists, structures).  List member names are accepted whatever they are
  ("SecurityGroupIds.SecurityGroupId.1" as botocore sends them, or
  "SecurityGroupIds.member.1"), and so is the flattened form.
* render_result(): serialises a Python dict for the operation's output
  shape into <ActionResponse><ActionResult>..</ActionResult>
  <ResponseMetadata><RequestId>..</RequestId></ResponseMetadata>.
  Member order follows the model; a key the model does not know raises,
  which keeps the state layer honest.
* render_error(): the Query-protocol <ErrorResponse> document.

No state and no HTTP here.
"""

import datetime
import re
from xml.sax.saxutils import escape

import botocore.loaders
import botocore.model

EC_API_VERSION = "2015-02-02"
EC_XMLNS = "http://elasticache.amazonaws.com/doc/2015-02-02/"
STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"

_loader = botocore.loaders.create_loader()
EC_MODEL = botocore.model.ServiceModel(
    _loader.load_service_model("elasticache", "service-2", EC_API_VERSION),
    service_name="elasticache",
)


# Members that newer service models have and older botocore releases may
# lack: emitted when the installed model knows them, dropped otherwise.
NEWER_MEMBERS = {"TransitEncryptionMode", "ClusterMode", "Engine"}


class ParamError(Exception):
    """A request parameter that cannot be decoded (bad int, bad bool...)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def operation(name):
    """Return the botocore OperationModel for an action, or None."""
    try:
        return EC_MODEL.operation_model(name)
    except Exception:  # botocore raises OperationNotFoundError
        return None


# ---------------------------------------------------------------- decoding

def _tree(fields):
    """Build a nested dict from dotted Query keys.

    Leaves are strings; a key that is both a leaf and a prefix keeps the
    dict (the prefix wins), which only matters for malformed input.
    """
    root = {}
    for key, value in fields.items():
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        last = parts[-1]
        if not isinstance(node.get(last), dict):
            node[last] = value
    return root


def _decode(node, shape, path):
    t = shape.type_name
    if t == "structure":
        if not isinstance(node, dict):
            if node == "":
                return {}
            raise ParamError("InvalidParameterValue",
                             "Invalid value for parameter %s" % path)
        out = {}
        for mname, mshape in shape.members.items():
            wire = mshape.serialization.get("name", mname)
            if wire in node:
                sub = "%s.%s" % (path, mname) if path else mname
                out[mname] = _decode(node[wire], mshape, sub)
        return out
    if t == "list":
        if node == "" or node is None:
            return []
        if not isinstance(node, dict):
            # A single scalar for a list parameter: accept as one element.
            return [_decode(node, shape.member, path)]
        if node and all(k.isdigit() for k in node):
            items = node  # flattened form: Name.1, Name.2
        else:
            items = {}
            for sub in node.values():
                if isinstance(sub, dict):
                    for k, v in sub.items():
                        if k.isdigit():
                            items[k] = v
        return [_decode(items[k], shape.member, "%s.%s" % (path, k))
                for k in sorted(items, key=int)]
    if isinstance(node, dict):
        raise ParamError("InvalidParameterValue",
                         "Invalid value for parameter %s" % path)
    if t in ("integer", "long"):
        try:
            return int(node.strip())
        except ValueError:
            raise ParamError(
                "InvalidParameterValue",
                "Invalid value for parameter %s: '%s' is not a valid integer"
                % (path, node))
    if t == "boolean":
        v = node.strip().lower()
        if v in ("true", "false"):
            return v == "true"
        raise ParamError(
            "InvalidParameterValue",
            "Invalid value for parameter %s: '%s' is not a valid boolean"
            % (path, node))
    if t in ("double", "float"):
        try:
            return float(node)
        except ValueError:
            raise ParamError("InvalidParameterValue",
                             "Invalid value for parameter %s" % path)
    if t == "timestamp":
        ts = parse_timestamp(node)
        if ts is None:
            raise ParamError(
                "InvalidParameterValue",
                "Invalid value for parameter %s: '%s' is not a valid "
                "ISO 8601 timestamp" % (path, node))
        return ts
    return node


def decode_params(op_model, fields):
    """Decode flat form fields into a dict typed by the input shape."""
    shape = op_model.input_shape
    if shape is None:
        return {}
    tree = _tree({k: v for k, v in fields.items()
                  if k not in ("Action", "Version")})
    return _decode(tree, shape, "")


def parse_timestamp(text):
    """ISO 8601 (with or without fraction / zone) or epoch seconds.

    Returns an aware UTC datetime or None.
    """
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.datetime.fromtimestamp(float(text),
                                               datetime.timezone.utc)
    t = text.replace("Z", "+00:00").replace("z", "+00:00")
    try:
        dt = datetime.datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.astimezone(datetime.timezone.utc)


# ---------------------------------------------------------------- encoding

def iso(ts):
    """Format an epoch float or datetime the way AWS Query APIs do."""
    if isinstance(ts, (int, float)):
        ts = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    ts = ts.astimezone(datetime.timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (
        ts.microsecond // 1000)


def _scalar(value, shape):
    t = shape.type_name
    if t == "boolean":
        return "true" if value else "false"
    if t == "timestamp":
        return iso(value)
    if t in ("double", "float"):
        return repr(float(value))
    return str(value)


def _encode(out, value, shape, indent):
    """Append the content of `value` (not its own element) to out."""
    t = shape.type_name
    pad = "  " * indent
    if t == "structure":
        unknown = set(value) - set(shape.members) - NEWER_MEMBERS
        if unknown:
            raise KeyError("%s has no member(s) %s" % (shape.name,
                                                        sorted(unknown)))
        for mname, mshape in shape.members.items():
            if mname not in value or value[mname] is None:
                continue
            wire = mshape.serialization.get("name", mname)
            _element(out, wire, value[mname], mshape, indent)
        return
    if t == "list":
        mname = shape.member.serialization.get("name", "member")
        for item in value:
            _element(out, mname, item, shape.member, indent)
        return
    out.append(pad + escape(_scalar(value, shape)))


def _element(out, name, value, shape, indent):
    pad = "  " * indent
    t = shape.type_name
    if t in ("structure", "list"):
        if t == "list" and shape.serialization.get("flattened"):
            for item in value:
                _element(out, name, item, shape.member, indent)
            return
        if (t == "list" and not value) or (t == "structure" and not value):
            out.append("%s<%s/>" % (pad, name))
            return
        out.append("%s<%s>" % (pad, name))
        _encode(out, value, shape, indent + 1)
        out.append("%s</%s>" % (pad, name))
    else:
        out.append("%s<%s>%s</%s>" % (pad, name,
                                      escape(_scalar(value, shape)), name))


def render_result(op_model, result, request_id):
    """Serialise a successful response for op_model."""
    name = op_model.name
    out = ['<%sResponse xmlns="%s">' % (name, EC_XMLNS)]
    oshape = op_model.output_shape
    if oshape is not None:
        wrapper = op_model.output_shape.serialization.get(
            "resultWrapper", name + "Result")
        out.append("  <%s>" % wrapper)
        _encode(out, result or {}, oshape, 2)
        out.append("  </%s>" % wrapper)
    out.append("  <ResponseMetadata>")
    out.append("    <RequestId>%s</RequestId>" % request_id)
    out.append("  </ResponseMetadata>")
    out.append("</%sResponse>" % name)
    return ("\n".join(out) + "\n").encode("utf-8")


def render_error(code, message, request_id, sender=True, xmlns=EC_XMLNS):
    """The Query protocol error document."""
    return ((
        '<ErrorResponse xmlns="%s">\n'
        "  <Error>\n"
        "    <Type>%s</Type>\n"
        "    <Code>%s</Code>\n"
        "    <Message>%s</Message>\n"
        "  </Error>\n"
        "  <RequestId>%s</RequestId>\n"
        "</ErrorResponse>\n") % (xmlns, "Sender" if sender else "Receiver",
                                 escape(code), escape(message),
                                 request_id)).encode("utf-8")


def error_status(code):
    """HTTP status for a modeled ElastiCache error code (default 400)."""
    return _ERROR_STATUS.get(code, 400)


def _build_error_status():
    table = {}
    for sname in EC_MODEL.shape_names:
        shape = EC_MODEL.shape_for(sname)
        meta = shape.metadata
        if meta.get("exception") and meta.get("error"):
            err = meta["error"]
            table[err.get("code", sname)] = err.get("httpStatusCode", 400)
    return table


_ERROR_STATUS = _build_error_status()
