#!/usr/bin/env python3
"""Independent check of a response signed by Warden (RFC 9421 §2.4): this script rebuilds the
signature base itself, from the RFC's rules, and verifies it with pyca/cryptography. It shares
no code with Warden. `tests/it/responses.rs` runs it when python3 has `cryptography`; by hand:

    python3 tests/interop/verify_response.py < exchange.json

where exchange.json is {"status": 200, "headers": [["name", "value"], ...], "body_b64": "...",
"method": "POST", "url": "https://api.example.com/v1/orders?x=1",
"request_headers": [["signature", "sig1=:...:"]], "public_key_pem": "-----BEGIN PUBLIC KEY..."}.
It handles the components Warden covers (@status, fields, @method;req, @target-uri;req,
@authority;req, @path;req, @query;req, and fields with ;req and ;key) and the algorithms
ed25519, ecdsa-p256-sha256 and ecdsa-p384-sha384. Prints "ok <label>" and exits 0, or prints
what failed and exits 1.
"""
import base64
import hashlib
import json
import sys
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def field(headers, name):
    values = [v.strip() for n, v in headers if n.lower() == name]
    if not values:
        fail("missing field " + name)
    return ", ".join(values)


def split_top(text, sep):
    """Splits on `sep` outside quotes and parentheses."""
    out, depth, quoted, cur = [], 0, False, ""
    for i, ch in enumerate(text):
        if quoted:
            cur += ch
            if ch == "\\":
                continue
            if ch == '"' and text[i - 1] != "\\":
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out]


def dictionary(text):
    members = {}
    for member in split_top(text, ","):
        label, _, value = member.partition("=")
        members[label.strip()] = value.strip()
    return members


def params(text):
    """`;a;b="c"` -> {"a": True, "b": "c"} (strings unquoted), in order."""
    out = {}
    for p in split_top(text, ";")[1:]:
        name, eq, value = p.partition("=")
        if not eq:
            out[name] = True
        elif value.startswith('"'):
            out[name] = value[1:-1]
        else:
            out[name] = int(value)
    return out


def main():
    ex = json.load(sys.stdin)
    headers = ex["headers"]
    req_headers = ex.get("request_headers", [])
    body = base64.b64decode(ex["body_b64"])
    url = urlsplit(ex["url"])
    inputs = dictionary(field(headers, "signature-input"))
    signatures = dictionary(field(headers, "signature"))
    if len(inputs) != 1:
        fail("expected one signature, found %s" % list(inputs))
    label, member = next(iter(inputs.items()))
    close = member.index(")")
    items = member[1:close].split(" ") if close > 1 else []
    sig_params = params(member[close + 1:])
    lines = []
    for item in items:
        name = item[1:item.index('"', 1)]
        p = params(item[len(name) + 2:])
        source = req_headers if p.get("req") else headers
        if name == "@status":
            value = str(ex["status"])
        elif name == "@method":
            value = ex["method"]
        elif name == "@target-uri":
            value = ex["url"]
        elif name == "@authority":
            value = url.netloc.lower()
        elif name == "@path":
            value = url.path or "/"
        elif name == "@query":
            value = "?" + url.query
        elif name.startswith("@"):
            fail("component not handled here: " + item)
        elif "key" in p:
            value = dictionary(field(source, name))[p["key"]]
        else:
            value = field(source, name)
        lines.append("%s: %s" % (item, value))
    lines.append('"@signature-params": ' + member)
    base = "\n".join(lines).encode()
    signature = base64.b64decode(signatures[label].strip(":"))
    key = serialization.load_pem_public_key(ex["public_key_pem"].encode())
    alg = sig_params.get("alg")
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if alg not in (None, "ed25519"):
                fail("alg %s on an ed25519 key" % alg)
            key.verify(signature, base)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            size = key.curve.key_size // 8 + (1 if key.curve.key_size % 8 else 0)
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            digest = hashes.SHA256() if size == 32 else hashes.SHA384()
            key.verify(encode_dss_signature(r, s), base, ec.ECDSA(digest))
        else:
            fail("key type not handled here")
    except Exception as e:  # InvalidSignature
        fail("signature does not verify: %r\nbase:\n%s" % (e, base.decode()))
    if any(i == '"content-digest"' for i in items):
        digests = dictionary(field(headers, "content-digest"))
        if "sha-512" in digests:
            want = base64.b64decode(digests["sha-512"].strip(":"))
            if hashlib.sha512(body).digest() != want:
                fail("content-digest sha-512 does not match the body")
        elif "sha-256" in digests:
            want = base64.b64decode(digests["sha-256"].strip(":"))
            if hashlib.sha256(body).digest() != want:
                fail("content-digest sha-256 does not match the body")
        else:
            fail("no sha-256 or sha-512 digest")
    print("ok " + label)


main()
