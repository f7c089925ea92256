"""Sends identify, track, page, screen, group and alias with a published Python library.

Usage: drive_python_libs.py segment-python|rudder-python BASE_URL WRITE_KEY USER_ID
  segment-python: segment-analytics-python, its defaults except gzip=True
  rudder-python:  rudder-sdk-python, its defaults (gzip is on by default)
Both with no retries and a short upload interval (same wire format).
Exits 0 only if the library reported no error (no on_error call, no error logged by it).
"""
import importlib
import logging
import sys

LIBRARIES = {
    # name: (module, logger, what is printed, settings beyond the host)
    "segment-python": ("segment.analytics", "segment", "segment-analytics-python", {"gzip": True}),
    "rudder-python": ("rudderstack.analytics", "rudderstack", "rudder-sdk-python", {}),
}


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.levelname} {record.getMessage()}")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in LIBRARIES:
        print(__doc__, file=sys.stderr)
        return 2
    lib, base, write_key, user_id = sys.argv[1:5]
    module, logger, published, settings = LIBRARIES[lib]
    analytics = importlib.import_module(module)
    version = importlib.import_module(f"{module}.version").VERSION
    logged = Errors()
    logging.getLogger(logger).addHandler(logged)
    failed = []
    client = analytics.Client(
        write_key,
        host=base,
        max_retries=0,
        upload_interval=0.1,
        on_error=lambda error, batch: failed.append(f"{error!r} for {[m.get('type') for m in batch]}"),
        **settings,
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
    print(f"{published} {version}: enqueued {enqueued}")
    for line in logged.records + failed:
        print(f"FAILED {line}", file=sys.stderr)
    if failed or logged.records or len(enqueued) != 6:
        print(f"{lib}: not all calls delivered")
        return 1
    print(f"{lib}: all 6 calls delivered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
