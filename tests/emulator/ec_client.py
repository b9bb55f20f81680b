"""The tests' handle on one ElastiCache emulator process: started on a
port it picks (it prints it), driven through its /_emulator/ control API,
and stopped by its pid, also on failure. Shared by tests/emulator's AWS
CLI checks and the integration tests that run cachekeeperd against it."""

import json
import os
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "elasticache_emulator.py")
PYTHON = "/usr/bin/python3"


class Emulator:
    def __init__(self, delay_ms=200, extra=()):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [PYTHON, EMULATOR, "--port", "0", "--delay-ms", str(delay_ms),
             "--exit-on-stdin-eof"] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("emulator did not print its port: %r\n%s"
                               % (line, self.stderr()))
        self.port = int(line)
        self.url = "http://127.0.0.1:%d" % self.port

    def stderr(self):
        if self.log.closed:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        """Stop the child by its pid."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()
        self.log.close()

    def control(self, path, data=None, method=None):
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(
            self.url + "/_emulator/" + path, data=body,
            method=method or ("POST" if body is not None else "GET"),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def group(self, rg_id):
        for g in self.control("state")["replication_groups"]:
            if g["ReplicationGroupId"] == rg_id:
                return g
        return None

    def wait_status(self, rg_id, status, timeout=10):
        deadline = time.time() + timeout
        cur = None
        while time.time() < deadline:
            g = self.group(rg_id)
            cur = g["Status"] if g else "gone"
            if cur == status:
                return g
            time.sleep(0.05)
        raise AssertionError("%s did not reach %s (now %s)"
                             % (rg_id, status, cur))

    def calls(self, kind="ok"):
        return self.control("calls").get(kind, {})

    def requests(self, action):
        return self.control("requests?action=" + action)["requests"]
