#!/usr/bin/env python3
"""Real clients against a running server: pymemcache and libmemcached's tools.

Starts its own server on a free 127.0.0.1 port: the ringcache binary named by
RINGCACHE_BIN (default target/release/ringcache), or memcached when
RINGCACHE_TEST_TARGET=memcached. With RINGCACHE_CLIENT_TLS=1 the server runs
with -Z (a certificate made with openssl) and pymemcache connects over TLS;
libmemcached's tools, which do not speak TLS, are skipped. Kills it on exit.
Prints 'N passed, N failed' and exits non-zero on any failure. Plain unittest,
no pytest needed.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from pymemcache.client.base import Client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = {}
TLS = os.environ.get("RINGCACHE_CLIENT_TLS") == "1"


def make_certificate(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=client-tests-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=server")
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    SERVER["tls_context"] = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
    return ["-Z", "-o", "ssl_chain_cert={0}/server.pem,ssl_key={0}/server.key".format(directory)]


def client():
    return Client(("127.0.0.1", SERVER["port"]), connect_timeout=5, timeout=5,
                  tls_context=SERVER.get("tls_context"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(extra):
    """Start the server under test on a free port; retry on a port collision."""
    for _ in range(8):
        port = free_port()
        if os.environ.get("RINGCACHE_TEST_TARGET") == "memcached":
            argv = ["memcached", "-U", "0", "-u", "root", "-t", "2", "-l", "127.0.0.1", "-p", str(port)]
        else:
            binary = os.environ.get("RINGCACHE_BIN", os.path.join(ROOT, "target", "release", "ringcache"))
            argv = [binary, "-t", "2", "-l", "127.0.0.1", "-p", str(port)]
        argv += extra
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.time() + 15
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return proc, port
            except OSError:
                time.sleep(0.05)
        proc.kill()
        proc.wait()
        log.seek(0)
        output = log.read().decode(errors="replace")
        if "in use" not in output:
            raise RuntimeError(f"{argv[0]} did not start (exit {proc.returncode}): {output}")
    raise RuntimeError("no free port after 8 attempts")


class PymemcacheTest(unittest.TestCase):
    def setUp(self):
        self.c = client()
        self.c.flush_all()

    def tearDown(self):
        self.c.close()

    def test_set_and_get(self):
        self.assertTrue(self.c.set("a", b"hello"))
        self.assertEqual(self.c.get("a"), b"hello")
        self.assertIsNone(self.c.get("missing"))

    def test_get_many_across_shards(self):
        items = {f"key{i}": f"value{i}".encode() for i in range(100)}
        self.assertEqual(self.c.set_many(items), [])
        got = self.c.get_many(list(items) + ["missing1", "missing2"])
        self.assertEqual(got, items)

    def test_add_replace_append_prepend(self):
        self.assertTrue(self.c.add("k", b"1", noreply=False))
        self.assertFalse(self.c.add("k", b"2", noreply=False))
        self.assertTrue(self.c.replace("k", b"3", noreply=False))
        self.assertFalse(self.c.replace("nope", b"3", noreply=False))
        self.assertTrue(self.c.append("k", b"z", noreply=False))
        self.assertTrue(self.c.prepend("k", b"a", noreply=False))
        self.assertEqual(self.c.get("k"), b"a3z")

    def test_cas(self):
        self.c.set("c", b"v1")
        value, cas = self.c.gets("c")
        self.assertEqual(value, b"v1")
        self.assertTrue(self.c.cas("c", b"v2", cas))
        self.assertFalse(self.c.cas("c", b"v3", cas))
        self.assertIsNone(self.c.cas("nope", b"v", cas))
        self.assertEqual(self.c.get("c"), b"v2")

    def test_incr_decr(self):
        self.c.set("n", b"10")
        self.assertEqual(self.c.incr("n", 5), 15)
        self.assertEqual(self.c.decr("n", 20), 0)
        self.assertIsNone(self.c.incr("nope", 1))
        self.c.set("n", b"18446744073709551615")
        self.assertEqual(self.c.incr("n", 1), 0)

    def test_delete(self):
        self.c.set("d", b"x")
        self.assertTrue(self.c.delete("d", noreply=False))
        self.assertFalse(self.c.delete("d", noreply=False))
        self.assertIsNone(self.c.get("d"))

    def test_touch_and_expiry(self):
        self.c.set("t", b"x")
        self.assertTrue(self.c.touch("t", 100, noreply=False))
        self.assertFalse(self.c.touch("nope", 100, noreply=False))
        self.assertTrue(self.c.touch("t", -1, noreply=False))
        self.assertIsNone(self.c.get("t"))

    def test_noreply_writes_land(self):
        self.c.set("q", b"1", noreply=True)
        self.c.incr("q", 4, noreply=True)
        self.c.append("q", b"!", noreply=True)
        self.assertEqual(self.c.get("q"), b"5!")
        self.c.delete("q", noreply=True)
        self.assertIsNone(self.c.get("q"))

    def test_flush_all(self):
        self.c.set("f", b"x")
        self.assertTrue(self.c.flush_all(noreply=False))
        self.assertIsNone(self.c.get("f"))

    def test_stats_and_version(self):
        stats = self.c.stats()
        for name in (b"curr_items", b"get_hits", b"limit_maxbytes", b"evictions"):
            self.assertIn(name, stats)
        self.assertTrue(self.c.version())

    def test_large_value(self):
        value = os.urandom(500_000)
        self.assertTrue(self.c.set("large", value))
        self.assertEqual(self.c.get("large"), value)


class LibmemcachedToolsTest(unittest.TestCase):
    def run_tool(self, *args, check=True):
        servers = f"--servers=127.0.0.1:{SERVER['port']}"
        done = subprocess.run([args[0], servers, *args[1:]], capture_output=True, timeout=30)
        if check and done.returncode != 0:
            self.fail(f"{args} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
        return done

    def setUp(self):
        if TLS:
            self.skipTest("libmemcached's tools do not speak TLS")
        for tool in ("memccp", "memccat", "memcrm", "memcstat", "memcflush"):
            if shutil.which(tool) is None:
                self.skipTest(f"{tool} is not installed (scripts/test.sh installs libmemcached-tools)")

    def test_copy_cat_remove_flush(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tool-file")
            with open(path, "wb") as f:
                f.write(b"contents from memccp\n")
            self.run_tool("memccp", path)
            out = self.run_tool("memccat", "tool-file").stdout
            # memccat prints a newline after each value.
            self.assertEqual(out, b"contents from memccp\n\n")
            self.run_tool("memcrm", "tool-file")
            missing = self.run_tool("memccat", "tool-file", check=False)
            self.assertNotEqual(missing.returncode, 0)
            self.run_tool("memccp", path)
            self.run_tool("memcflush")
            missing = self.run_tool("memccat", "tool-file", check=False)
            self.assertNotEqual(missing.returncode, 0)

    def test_stat(self):
        out = self.run_tool("memcstat").stdout.decode(errors="replace")
        self.assertIn("curr_items", out)
        self.assertIn("limit_maxbytes", out)


def main():
    certs = tempfile.TemporaryDirectory()
    try:
        proc, port = start_server(make_certificate(certs.name) if TLS else [])
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"cannot start the server under test: {error}")
        print("client tests: 0 passed, 1 failed, 0 skipped")
        return 1
    SERVER["port"] = port
    try:
        suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
        result = unittest.TextTestRunner(verbosity=2).run(suite)
    finally:
        proc.kill()
        proc.wait()
        certs.cleanup()
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    over = " over TLS" if TLS else ""
    print(f"client tests{over}: {passed} passed, {failed} failed, {len(result.skipped)} skipped")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
