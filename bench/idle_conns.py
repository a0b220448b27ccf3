#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one request on each, reads the full
response, and leaves them idle; reports the proxy's memory before and after.

    idle_conns.py --port P --host bench.local --path /small --count 10000 \
        --pids 123,456 [--window 100] [--settle 3]

--pids are the proxy's processes (nginx master and workers); VmRSS is summed over them.
Prints one JSON object. Standard library only; needs `ulimit -n` above --count.
"""

import argparse
import json
import selectors
import socket
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Conn:
    __slots__ = ("sock", "buf", "sent", "done", "failed")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent = False
        self.done = False
        self.failed = False

    def response_complete(self):
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        length = 0
        for line in self.buf[:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return len(self.buf) >= head_end + 4 + length


def run(args):
    pids = [int(p) for p in args.pids.split(",") if p]
    before = rss_kib(pids)
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\nUser-Agent: idle-conns\r\n\r\n"
    ).encode()
    sel = selectors.DefaultSelector()
    conns = []
    ok = failed = 0
    started = time.monotonic()
    pending = 0
    next_index = 0
    # Keep `window` requests in flight; open a connection, send, read, leave it idle.
    while ok + failed < args.count:
        while pending < args.window and next_index < args.count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", args.port))
            c = Conn(s)
            conns.append(c)
            sel.register(s, selectors.EVENT_WRITE, c)
            pending += 1
            next_index += 1
        for key, events in sel.select(timeout=10):
            c = key.data
            try:
                if events & selectors.EVENT_WRITE and not c.sent:
                    c.sock.sendall(request)
                    c.sent = True
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                chunk = c.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the response ended")
                c.buf += chunk
                if c.response_complete():
                    c.done = True
                    c.buf = b""
                    ok += 1
                    pending -= 1
                    sel.unregister(c.sock)
            except (OSError, ValueError):
                c.failed = True
                failed += 1
                pending -= 1
                sel.unregister(c.sock)
                c.sock.close()
        if time.monotonic() - started > args.timeout:
            break
    open_time = time.monotonic() - started
    time.sleep(args.settle)
    after = rss_kib(pids)
    # Check they are still open (a proxy may have closed idle connections already).
    still_open = 0
    for c in conns:
        if c.done:
            try:
                data = c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                if data:
                    still_open += 1
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
    for c in conns:
        c.sock.close()
    return {
        "count": args.count,
        "ok": ok,
        "failed": failed,
        "still_open": still_open,
        "open_seconds": round(open_time, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "delta_kib": after - before,
        "kib_per_conn": round((after - before) / max(ok, 1), 2),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="bench.local")
    p.add_argument("--path", default="/small")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--pids", required=True)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=120.0)
    print(json.dumps(run(p.parse_args())))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
