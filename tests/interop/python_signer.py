#!/usr/bin/env python3
"""Interop check: requests signed by an independent RFC 9421 implementation (the PyPI package
`http-message-signatures`, pyauth) must pass Warden, and tampered copies must fail.

Not part of `cargo test` (it needs pip packages). To run it by hand:

    pip install http-message-signatures requests cryptography
    warden keygen --out /tmp/k.pem --keyid interop-key     # paste the public key into a client
    # config: a bearer route on /v1/** and a client "interop" (secret "secret") with that key
    WARDEN=http://127.0.0.1:8080 KEY=/tmp/k.pem python3 tests/interop/python_signer.py

Last run (2026-11-23, again after the batch verifier): signed 200 (both @target-uri and @authority+@path+@query coverage);
tampered body 400 digest_mismatch; tampered query and method 401 signature_invalid.
"""
import base64
import datetime
import hashlib
import json
import os
import uuid

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

BASE = os.environ.get("WARDEN", "http://127.0.0.1:8080")
KEY = load_pem_private_key(open(os.environ["KEY"], "rb").read(), None)
CLIENT = os.environ.get("CLIENT", "interop")
SECRET = os.environ.get("SECRET", "secret")
KEYID = os.environ.get("KEYID", "interop-key")


class Resolver(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id):
        return KEY


signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Resolver())
token = requests.post(BASE + "/v1/oauth/token", auth=(CLIENT, SECRET),
                      data={"grant_type": "client_credentials"}).json()["access_token"]


def send(tamper=None, covered=None):
    body = json.dumps({"amount": 100, "currency": "EUR"}).encode()
    req = requests.Request("POST", BASE + "/v1/orders?x=1", data=body, headers={
        "Content-Type": "application/json",
        "Authorization": "Bearer " + token,
        "Idempotency-Key": '"%s"' % uuid.uuid4(),
        "Content-Digest": "sha-512=:%s:" % base64.b64encode(hashlib.sha512(body).digest()).decode(),
    }).prepare()
    signer.sign(req, key_id=KEYID, created=datetime.datetime.now(datetime.timezone.utc),
                label="sig1", use_existing_digest=True,
                covered_component_ids=covered or ("@method", "@target-uri", "content-digest",
                                                  "content-type", "authorization", "idempotency-key"))
    if tamper == "body":
        req.body = body.replace(b"100", b"999")
    elif tamper == "query":
        req.url = req.url.replace("x=1", "x=2")
    elif tamper == "method":
        req.method = "PUT"
    r = requests.Session().send(req)
    code = r.json().get("code") if r.headers.get("content-type", "").startswith("application/problem") else ""
    return r.status_code, code


results = {
    "signed (@target-uri)": (send(), 200),
    "signed (@authority @path @query)": (send(covered=(
        "@method", "@authority", "@path", "@query", "content-digest", "content-type",
        "authorization", "idempotency-key")), 200),
    "tampered body": (send("body"), 400),
    "tampered query": (send("query"), 401),
    "tampered method": (send("method"), 401),
}
failed = 0
for name, ((status, code), want) in results.items():
    ok = status == want
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {status} {code}")
print(f"{len(results) - failed} passed, {failed} failed")
raise SystemExit(1 if failed else 0)
