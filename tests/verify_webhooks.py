"""Verifies webhook deliveries with the Standard Webhooks reference library.

Used by tests/webhooks.rs so that every signature the service sends is checked by code that is
not the service's own. Input on stdin:

    {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}, ...]}

Output on stdout: a JSON list with one entry per delivery, in order:
{"ok": true, "payload": <the parsed body>} or {"ok": false, "error": "..."}.

Needs `standardwebhooks==1.1.0` (`.ci/run` installs it).
"""

import json
import sys

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> None:
    request = json.load(sys.stdin)
    hook = Webhook(request["secret"])
    results = []
    for delivery in request["deliveries"]:
        try:
            payload = hook.verify(delivery["body"], delivery["headers"])
            results.append({"ok": True, "payload": payload})
        except WebhookVerificationError as e:
            results.append({"ok": False, "error": str(e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
