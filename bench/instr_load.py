#!/usr/bin/env python3
"""Sequential requests for the `instr` case of bench/run.sh (instructions per request).

The data plane runs under callgrind, about fifty times slower than normal, so the load is
a plain loop, not wrk: COUNT GET requests on one keep-alive connection, or each on a new
connection with `--close`. One connection, so that it is never idle long enough to be
parked (50 ms) however slow the machine: parking and waking would add instructions that
depend on timing. Every answer must be 200, or the count would include error paths;
exits non-zero otherwise.

`--proxy-v2` (with `--close`): each connection is made from 127.0.0.2 and starts with a
PROXY protocol v2 header (PROXY, TCP over IPv4, client 192.0.2.1, as HAProxy's
`send-proxy-v2` sends it), for a data plane run with `--proxy-protocol-from 127.0.0.2/32`.

`--tls` (keep-alive only): the connection is TLS 1.3 with ALPN `http/1.1`, the
certificate not verified (the fixture's is self-signed); its one handshake is counted
with the requests (a few thousand instructions per request over 5,000).

    instr_load.py --port P --host H --count N [--token T] [--close [--proxy-v2] | --tls]
"""

import argparse
import http.client
import socket
import ssl
import struct
import sys

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2_header(port):
    addresses = socket.inet_aton("192.0.2.1") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, port)
    return PROXY_V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def keep_alive(args, headers):
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.set_alpn_protocols(["http/1.1"])
        conn = http.client.HTTPSConnection("127.0.0.1", args.port, timeout=60, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
    for i in range(args.count):
        conn.request("GET", args.path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"request {i}: status {response.status}")


def new_connection_each(args, headers):
    lines = [f"GET {args.path} HTTP/1.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    source = None
    if args.proxy_v2:
        request = proxy_v2_header(args.port) + request
        source = ("127.0.0.2", 0)
    for i in range(args.count):
        with socket.create_connection(("127.0.0.1", args.port), timeout=60, source_address=source) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            sys.exit(f"request {i}: {answer[:40]!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--path", default="/small")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--token")
    parser.add_argument("--close", action="store_true")
    parser.add_argument("--proxy-v2", action="store_true")
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    if args.tls and args.close:
        parser.error("--tls is for keep-alive requests only")
    headers = {"Host": args.host}
    if args.token:
        headers["Authorization"] = "Bearer " + args.token
    (new_connection_each if args.close else keep_alive)(args, headers)


if __name__ == "__main__":
    main()
