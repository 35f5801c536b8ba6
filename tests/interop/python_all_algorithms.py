#!/usr/bin/env python3
"""Interop check in every RFC 9421 algorithm: requests signed by an independent implementation
(the PyPI package `http-message-signatures`, with pyca/cryptography keys) must pass a Warden
that requires signatures, and tampered copies must fail. Self-contained: it makes the keys,
writes a config, starts the `warden` binary and a small upstream, and stops both.

Not part of `cargo test` (it needs pip packages). To run it by hand:

    pip install http-message-signatures requests cryptography
    cargo build && BIN=target/debug/warden python3 tests/interop/python_all_algorithms.py

Last run (2026-12-06, http-message-signatures 3.0.0, cryptography 48.0.0): all six algorithms
signed 200, tampered body 400 digest_mismatch, tampered query and signature 401, alg naming
another algorithm 401 algorithm_mismatch.
"""
import base64
import datetime
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

BIN = os.environ.get("BIN", "target/debug/warden")
CLIENT, SECRET = "interop", "interop-secret-5Hq"


class Upstream(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, *args):
        pass


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def main():
    tmp = tempfile.mkdtemp()
    keys = {
        "k-pss": (algorithms.RSA_PSS_SHA512, rsa.generate_private_key(65537, 2048)),
        "k-v15": (algorithms.RSA_V1_5_SHA256, rsa.generate_private_key(65537, 2048)),
        "k-p256": (algorithms.ECDSA_P256_SHA256, ec.generate_private_key(ec.SECP256R1())),
        "k-p384": (algorithms.ECDSA_P384_SHA384, ec.generate_private_key(ec.SECP384R1())),
        "k-ed25519": (algorithms.ED25519, ed25519.Ed25519PrivateKey.generate()),
        "k-hmac": (algorithms.HMAC_SHA256, os.urandom(32)),
    }
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    toml = f"""
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:{upstream.server_port}"
[store]
url = "sqlite://{tmp}/warden.db"
[[routes]]
name = "api"
path = "/v1/**"
auth = "bearer"
signature = "required"
idempotency = "off"
[[clients]]
id = "{CLIENT}"
secret_sha256 = "{hashlib.sha256(SECRET.encode()).hexdigest()}"
scopes = ["read"]
"""
    for keyid, (alg, key) in keys.items():
        toml += f'[[clients.keys]]\nid = "{keyid}"\nalg = "{alg.algorithm_id}"\n'
        if isinstance(key, bytes):
            path = os.path.join(tmp, keyid)
            with open(path, "w") as f:
                f.write(base64.b64encode(key).decode())
            toml += f'secret_file = "{path}"\n'
        else:
            toml += f"public_key = '''{pem_public(key)}'''\n"
    config = os.path.join(tmp, "warden.toml")
    with open(config, "w") as f:
        f.write(toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    proc = subprocess.Popen([BIN, "--config", config, "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    base = None
    deadline = time.time() + 30
    while time.time() < deadline and base is None:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if os.environ.get("DEBUG"):
            print(line, end="")
        m = re.search(r"(127\.0\.0\.1:\d+)", line) if "listen" in line else None
        if m:
            base = "http://" + m.group(1)
    if base is None:
        proc.kill()
        sys.exit("warden did not start")
    try:
        token = requests.post(base + "/v1/oauth/token", auth=(CLIENT, SECRET),
                              data={"grant_type": "client_credentials"}).json()["access_token"]
        failed = 0
        for keyid, (alg, key) in keys.items():
            class Resolver(HTTPSignatureKeyResolver):
                def resolve_private_key(self, key_id):
                    return key

            signer = HTTPMessageSigner(signature_algorithm=alg, key_resolver=Resolver())

            def send(tamper=None):
                body = json.dumps({"amount": 100}).encode()
                req = requests.Request("POST", base + "/v1/orders?x=1", data=body, headers={
                    "Content-Type": "application/json",
                    "Authorization": "Bearer " + token,
                    "Idempotency-Key": '"%s"' % uuid.uuid4(),
                    "Content-Digest": "sha-512=:%s:" % base64.b64encode(
                        hashlib.sha512(body).digest()).decode(),
                }).prepare()
                signer.sign(req, key_id=keyid, created=datetime.datetime.now(datetime.timezone.utc),
                            label="sig1", include_alg=True, use_existing_digest=True,
                            covered_component_ids=("@method", "@target-uri", "content-digest",
                                                   "content-type", "authorization",
                                                   "idempotency-key"))
                if tamper == "body":
                    req.body = body.replace(b"100", b"999")
                elif tamper == "query":
                    req.url = req.url.replace("x=1", "x=2")
                elif tamper == "signature":
                    s = req.headers["Signature"]
                    i = s.index(":") + 6
                    req.headers["Signature"] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
                elif tamper == "alg":
                    other = "ed25519" if alg.algorithm_id != "ed25519" else "hmac-sha256"
                    req.headers["Signature-Input"] = req.headers["Signature-Input"].replace(
                        'alg="%s"' % alg.algorithm_id, 'alg="%s"' % other)
                r = requests.Session().send(req)
                code = r.json().get("code", "") if r.headers.get("content-type", "").startswith(
                    "application/problem") else ""
                return r.status_code, code

            for name, want in [(None, (200, "")), ("body", (400, "digest_mismatch")),
                               ("query", (401, "signature_invalid")),
                               ("signature", (401, "signature_invalid")),
                               ("alg", (401, "algorithm_mismatch"))]:
                got = send(name)
                ok = got == want
                failed += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {alg.algorithm_id:18} {name or 'signed':9} {got}")
        print(f"{len(keys) * 5 - failed} passed, {failed} failed")
        sys.exit(1 if failed else 0)
    finally:
        proc.kill()
        upstream.shutdown()


main()
