"""An SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts.

Usage: smtp_server.py OUTDIR [--defer ADDR]... [--reject ADDR]...
Listens on 127.0.0.1 on a free port and prints `listening 127.0.0.1:PORT` once ready.
Each accepted message becomes OUTDIR/<n>.json: the envelope (mail_from, rcpt_tos), the
client's EHLO/HELO name, the message's bytes as the server received them (after the SMTP
layer undid dot-stuffing, decoded as latin-1 so every byte survives), and the message as
Python's email package reads it: `headers` ([name, value] with RFC 2047 words decoded,
in order) and `parts` (each leaf part's content type, charset, transfer encoding and
decoded text). RCPT TO an
address given with --defer is answered 450 (try later), with --reject 550 (no such user).
Runs until stdin closes or it is killed.
"""
import argparse
import asyncio
import json
import os
import sys
from email import message_from_bytes, policy

from aiosmtpd.smtp import SMTP


def parsed(raw):
    message = message_from_bytes(raw, policy=policy.default)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        parts.append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "transfer_encoding": part.get("Content-Transfer-Encoding"),
            "text": part.get_content(),
        })
    return {
        "content_type": message.get_content_type(),
        "headers": [[name, str(value)] for name, value in message.items()],
        "parts": parts,
    }


class Keeper:
    def __init__(self, outdir, defer, reject):
        self.outdir = outdir
        self.defer = {a.lower() for a in defer}
        self.reject = {a.lower() for a in reject}
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.defer:
            return "450 4.2.1 Mailbox busy, try again later"
        if address.lower() in self.reject:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "host_name": session.host_name,
            "data": envelope.original_content.decode("latin-1"),
            **parsed(envelope.original_content),
        }
        path = os.path.join(self.outdir, f"{self.count}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)
        return f"250 2.0.0 Ok: queued as q{self.count}"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--defer", action="append", default=[])
    parser.add_argument("--reject", action="append", default=[])
    args = parser.parse_args()
    handler = Keeper(args.outdir, args.defer, args.reject)
    loop = asyncio.get_running_loop()
    # decode_data=False keeps the raw bytes (original_content) for the test to parse.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp.test", decode_data=False), "127.0.0.1", 0
    )
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    # Stop when the test closes our stdin (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
