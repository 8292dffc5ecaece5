#!/usr/bin/env python3
"""pymemcache over TLS against a server that tests/tls.rs started.

    tls_pymemcache.py PORT CA_PEM round-trip [CLIENT_PEM CLIENT_KEY]
    tls_pymemcache.py PORT CA_PEM refused

`round-trip` runs get/set/multi-get/delete/incr, a value spanning many TLS
records and a pipeline of requests in one write, and prints `ok`; `refused`
expects the server to refuse the handshake (no client certificate) and prints
`refused`. Any other outcome exits non-zero with the reason.
"""

import socket
import ssl
import sys

from pymemcache.client.base import Client

LARGE_VALUE_BYTES = 700 * 1024
PIPELINED_REQUESTS = 2000


def context(ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


def round_trip(port, ctx):
    c = Client(("127.0.0.1", port), tls_context=ctx, timeout=10)
    c.set("greeting", b"hello")
    check("get", c.get("greeting"), b"hello")
    c.set("other", b"world", expire=0)
    check("get_many", c.get_many(["greeting", "other", "missing"]),
          {"greeting": b"hello", "other": b"world"})
    c.set("counter", b"41")
    check("incr", c.incr("counter", 1), 42)
    check("delete", c.delete("greeting", noreply=False), True)
    check("get after delete", c.get("greeting"), None)
    large = bytes((i * 7) % 251 for i in range(LARGE_VALUE_BYTES))
    c.set("large", large)
    check("large value", c.get("large"), large)
    c.close()

    # Many requests in one write, read back in order.
    raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname="127.0.0.1")
    requests = bytearray()
    expected = bytearray()
    for i in range(PIPELINED_REQUESTS):
        value = f"v{i}".encode()
        requests += b"set p%d 0 0 %d\r\n%s\r\nget p%d\r\n" % (i, len(value), value, i)
        expected += b"STORED\r\nVALUE p%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(value), value)
    raw.sendall(requests)
    received = bytearray()
    while len(received) < len(expected):
        chunk = raw.recv(65536)
        if not chunk:
            break
        received += chunk
    check("pipelined replies", bytes(received), bytes(expected))
    raw.close()
    print("ok")


def refused(port, ctx):
    try:
        c = Client(("127.0.0.1", port), tls_context=ctx, timeout=10)
        c.set("k", b"v")
        got = c.get("k")
    except (ssl.SSLError, ConnectionError, OSError) as e:
        print("refused", type(e).__name__)
        return
    sys.exit(f"served without a client certificate: {got!r}")


def main():
    port, ca, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if mode == "round-trip":
        round_trip(port, context(ca, *sys.argv[4:6]))
    elif mode == "refused":
        refused(port, context(ca))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
