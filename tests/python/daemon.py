"""Starts the real adaptcached for the Python tests (as tests/integration/daemon_fixture.h).

Daemon(bin_dir) runs <bin_dir>/adaptcached on a private directory under /dev/shm (socket,
pool file, ready file and log), with a small pool, an ephemeral metrics port and no SSD
tier; start() returns once the ready file is written. Use as a context manager.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request


def build_dir() -> str:
    """$ADAPTCACHE_BUILD_DIR, else <repo>/build."""
    d = os.environ.get("ADAPTCACHE_BUILD_DIR", "")
    if d:
        return os.path.abspath(d)
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "build"))


class Daemon:
    def __init__(self, bin_dir: str | None = None, pool_bytes: int = 64 << 20, extra_args=(), timeout_s: float = 30):
        self.bin = os.path.join(bin_dir or os.path.join(build_dir(), "bin"), "adaptcached")
        self.pool_bytes = pool_bytes
        self.extra_args = list(extra_args)
        self.timeout_s = timeout_s
        self.dir = None
        self.proc = None
        self.metrics_port = 0

    @property
    def socket_path(self) -> str:
        return os.path.join(self.dir, "adaptcached.sock")

    @property
    def target(self) -> str:
        return "unix:" + self.socket_path

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "daemon.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self) -> "Daemon":
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError(f"no adaptcached at {self.bin} (build it, or set ADAPTCACHE_BUILD_DIR)")
        self.dir = tempfile.mkdtemp(prefix="adaptcache-py-", dir="/dev/shm")
        ready = os.path.join(self.dir, "ready")
        args = [self.bin, "--socket", self.socket_path, "--metrics-listen", "127.0.0.1:0",
                "--pool-size", str(self.pool_bytes), "--shm-dir", self.dir, "--pool-name", "py",
                "--ready-file", ready, "--log-level", "warn"]
        if "--ssd-dir" not in self.extra_args:
            args += ["--ssd-dir", ""]
        args += self.extra_args
        log = open(os.path.join(self.dir, "daemon.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"adaptcached exited during start ({self.proc.returncode}):\n{self.log()}")
            if os.path.exists(ready):
                with open(ready, encoding="utf-8") as f:
                    kv = dict(line.strip().split("=", 1) for line in f if "=" in line)
                if kv.get("pid") == str(self.proc.pid):
                    self.metrics_port = int(kv.get("metrics_port", "0"))
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"adaptcached wrote no ready file in {self.timeout_s} s:\n{self.log()}")

    def scrape(self, path: str = "/metrics") -> str:
        """GET of the daemon's metrics HTTP endpoint (/metrics, /healthz)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=10) as r:
            return r.read().decode("utf-8")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
