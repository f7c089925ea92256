"""Records every HTTP request a tracking client makes and answers like a tracking host.

Usage: record_server.py PORT LOGFILE [--fail STATUS[:BODY] [--fail-count N]]
Listens on 127.0.0.1:PORT. Appends one JSON line per request to LOGFILE: method, path, query,
headers, the body decoded (gzip/deflate undone, JSON parsed when it parses). Answers:
  OPTIONS *                         -> 204 with CORS headers (--cors star|origin, default star)
  GET /sourceConfig/...             -> RudderStack source config (data plane = this server)
  GET /v1/projects/{key}/settings   -> analytics-next settings pointing Segment.io at this server
  GET /static/...                   -> files under --static DIR (for the browser libraries)
  anything else                     -> 200 {"success": true}
With --fail, the first N (default: all) tracking requests get STATUS and BODY instead, so
retry behaviour can be observed.
"""
import argparse
import gzip
import json
import mimetypes
import os
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()


def decode(raw, encoding):
    info = {"raw_len": len(raw)}
    try:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
    except Exception as e:  # a client that lies about its encoding is worth recording
        info["decode_error"] = repr(e)
    info["decoded_len"] = len(raw)
    text = raw.decode("utf-8", "replace")
    try:
        info["json"] = json.loads(text) if text else None
    except ValueError:
        info["text"] = text[:4000]
    return info


def make_handler(args):
    fails = {"left": args.fail_count}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def record(self, body_info, status):
            url = urlsplit(self.path)
            entry = {
                "t": round(time.time(), 3),
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "headers": {k: v for k, v in self.headers.items()},
                "body": body_info,
                "answered": status,
            }
            with LOCK, open(args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")

        def cors(self):
            origin = self.headers.get("Origin")
            if origin and args.cors == "star":
                self.send_header("Access-Control-Allow-Origin", "*")
            elif origin:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Vary", "Origin")
            asked = self.headers.get("Access-Control-Request-Headers")
            if asked:
                self.send_header("Access-Control-Allow-Headers", asked)
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")

        def reply(self, status, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(status)
            self.cors()
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return decode(raw, (self.headers.get("Content-Encoding") or "").lower())

        def do_OPTIONS(self):
            self.record(None, 204)
            self.send_response(204)
            self.cors()
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            url = urlsplit(self.path)
            base = f"http://{self.headers.get('Host')}"
            if url.path.startswith("/static/") and args.static:
                rel = os.path.normpath(url.path[len("/static/"):]).lstrip("/")
                full = os.path.join(args.static, rel)
                if ".." in rel or not os.path.isfile(full):
                    self.record(None, 404)
                    return self.reply(404, "not found", "text/plain")
                self.record(None, 200)
                with open(full, "rb") as f:
                    return self.reply(200, f.read(), mimetypes.guess_type(full)[0] or "application/octet-stream")
            if url.path.rstrip("/") == "/sourceConfig":
                q = parse_qs(url.query)
                key = (q.get("writeKey") or [""])[0]
                # The least @rudderstack/analytics-js 3.34.1 needs (isValidSourceConfig): source.id not
                # null, source.config an object, source.destinations an array, enabled not false.
                cfg = {"source": {"id": "src-" + key, "config": {}, "destinations": []}}
                self.record(None, 200)
                return self.reply(200, json.dumps(cfg))
            if url.path.startswith("/v1/projects/") and url.path.endswith("/settings"):
                host = self.headers.get("Host")
                # The least @segment/analytics-next 1.84.3 needs to send here: only "Segment.io" under
                # integrations (another key loads legacy destinations from the CDN); apiKey becomes the
                # body's writeKey and the Basic user; apiHost + protocol make the event URLs.
                settings = {
                    "integrations": {"Segment.io": {"apiKey": url.path.split("/")[3], "apiHost": f"{host}/v1", "protocol": "http"}},
                }
                self.record(None, 200)
                return self.reply(200, json.dumps(settings))
            self.record(None, 200)
            return self.reply(200, '{"success":true}')

        def do_POST(self):
            info = self.read_body()
            if args.fail and fails["left"] != 0:
                fails["left"] -= 1
                status, _, body = args.fail.partition(":")
                self.record(info, int(status))
                return self.reply(int(status), body or '{"error":"failing on purpose"}')
            self.record(info, 200)
            return self.reply(200, '{"success":true}')

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("log")
    p.add_argument("--static")
    p.add_argument("--cors", choices=["star", "origin"], default="star",
                   help="star: Access-Control-Allow-Origin: * (refused for credentialed requests); "
                        "origin: echo the Origin with Allow-Credentials: true")
    p.add_argument("--fail")
    p.add_argument("--fail-count", type=int, default=-1)
    args = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    print(f"recording on 127.0.0.1:{args.port} to {args.log}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
