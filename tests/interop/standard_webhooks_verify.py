#!/usr/bin/env python3
"""Verifies webhook deliveries Warden sent with an independent Standard Webhooks implementation:
the PyPI package `standardwebhooks` (the spec authors' reference library).

Run by tests/it/webhooks.rs with a JSON file of captured deliveries
(`[{"secret": "whsec_…", "headers": {"webhook-id": …}, "body": "…"}, …]`). Each must verify,
and a copy with one byte of its body changed must not. Prints `verified N` and exits 0; exits 3
(and says why) when the package cannot be imported, so the test can report that it skipped.
"""
import json
import sys

try:
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"standardwebhooks is not importable: {e}")
    sys.exit(3)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        deliveries = json.load(f)
    for i, d in enumerate(deliveries):
        hook = Webhook(d["secret"])
        body = d["body"].encode("utf-8")
        payload = hook.verify(body, d["headers"])
        if payload.get("id") != d["headers"]["webhook-id"]:
            print(f"delivery {i}: payload id {payload.get('id')!r} is not the webhook-id")
            return 1
        tampered = body.replace(b'"type"', b'"tYpe"', 1)
        try:
            hook.verify(tampered, d["headers"])
        except WebhookVerificationError:
            pass
        else:
            print(f"delivery {i}: a tampered body verified")
            return 1
    print(f"verified {len(deliveries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
