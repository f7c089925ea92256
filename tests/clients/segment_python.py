"""Sends real tracking calls with Segment's official Python library (segment-analytics-python).

Usage: segment_python.py BASE_URL WRITE_KEY USER_ID
Exits non-zero if the library reports any error.
"""
import sys

import segment.analytics as analytics

base, write_key, user_id = sys.argv[1:4]
errors = []
analytics.write_key = write_key
analytics.host = base
analytics.sync_mode = True
analytics.max_retries = 0
analytics.on_error = lambda error, items: errors.append(repr(error))

analytics.identify(user_id, {"email": f"{user_id}@example.com", "plan": "pro"}, anonymous_id="py-anon")
analytics.track(user_id, "Order Completed", {"order_id": "o-1", "total": 42.5, "currency": "USD"})
analytics.page(user_id, "Docs", "Getting Started", {"url": "https://example.com/docs"})
analytics.group(user_id, "team-1", {"name": "Acme"})
analytics.alias("py-previous", user_id)
analytics.flush()

if errors:
    print("errors:", errors, file=sys.stderr)
    sys.exit(1)
print("sent")
