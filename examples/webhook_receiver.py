"""A receiver for a job's `progress_webhook`: checks each POST's signature, prints it.

    PROGRESS_WEBHOOK_SECRET=<the endpoint's secret> python examples/webhook_receiver.py --port 9000

Put the same check in your app's route: `verify_webhook` needs the raw body, the
`Webhook-Signature` header and the secret, and raises `WebhookRejected` otherwise.
"""

from __future__ import annotations

import argparse
import http.server
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's client package
from comfy_worker_client import WebhookRejected, verify_webhook

log = logging.getLogger("webhook_receiver")


class Receiver(http.server.BaseHTTPRequestHandler):
    secret = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            update = verify_webhook(self.secret, body, self.headers.get("Webhook-Signature"))
        except WebhookRejected as rejected:
            log.warning("rejected a POST: %s", rejected)
            self.send_response(401)
        else:
            output = update.get("output") or {}
            if update["status"] == "IN_PROGRESS":
                log.info("%s: %s (%.0f%%)", update["id"], output.get("message"), 100 * output.get("progress", 0))
            else:
                log.info("%s: %s %s", update["id"], update["status"], sorted(output))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    Receiver.secret = os.environ.get("PROGRESS_WEBHOOK_SECRET", "")
    if not Receiver.secret:
        parser.error("set PROGRESS_WEBHOOK_SECRET to the endpoint's secret")
    log.info("listening on http://127.0.0.1:%d/", args.port)
    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
