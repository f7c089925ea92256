"""Sends identify, track, page, screen, group and alias with rudder-sdk-python (defaults: gzip on).

Usage: rudder_python.py BASE_URL WRITE_KEY USER_ID
Library defaults except no retries and a short upload interval (same wire format).
Exits 0 only if the library reported no error (no on_error call, no error logged by "rudderstack").
"""
import logging
import sys

from rudderstack.analytics import Client
from rudderstack.analytics.version import VERSION


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.levelname} {record.getMessage()}")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, write_key, user_id = sys.argv[1:4]
    logged = Errors()
    logging.getLogger("rudderstack").addHandler(logged)
    failed = []
    client = Client(
        write_key,
        host=base,
        max_retries=0,
        upload_interval=0.1,
        on_error=lambda error, batch: failed.append(f"{error!r} for {[m.get('type') for m in batch]}"),
    )
    sent = [
        client.identify(user_id, {"email": f"{user_id}@example.com", "plan": "pro", "name": "Ada"}, anonymous_id=f"{user_id}-anon"),
        client.track(user_id, "Order Completed", {"order_id": "o-1", "total": 42.5, "currency": "USD"}),
        client.page(user_id, "Docs", "Getting Started", {"url": "https://example.com/docs", "title": "Getting Started"}),
        client.screen(user_id, "App", "Home", {"variation": "blue"}),
        client.group(user_id, "team-1", {"name": "Acme", "plan": "enterprise"}),
        client.alias(f"{user_id}-previous", user_id),
    ]
    client.flush()
    client.shutdown()
    enqueued = [msg["type"] for ok, msg in sent if ok]
    print(f"rudder-sdk-python {VERSION}: enqueued {enqueued}")
    for line in logged.records + failed:
        print(f"FAILED {line}", file=sys.stderr)
    if failed or logged.records or len(enqueued) != 6:
        print("rudder-python: not all calls delivered")
        return 1
    print("rudder-python: all 6 calls delivered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
