"""``make run``: the embedded broker plus the six services as separate processes.

Prefixes each service's log lines, waits until every service answers /readyz, prints the
gateway URL, restarts a service that crashes (and says so loudly), and on Ctrl-C or
SIGTERM stops the services first and the broker last, leaving no process or port behind.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from .broker import EmbeddedBroker
from .settings import CommonSettings, load_settings

SERVICES = ["ingest", "trainer", "explainer", "reporter", "monitor", "gateway"]
COLORS = {"broker": 90, "ingest": 36, "trainer": 33, "explainer": 35, "reporter": 32, "monitor": 34, "gateway": 97}


class StackSettings(CommonSettings):
    broker_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded broker.")
    gateway_port: int = Field(8000, ge=1, le=65535, description="Port of the gateway's API.")
    service_port_base: int = Field(
        8101, ge=1, le=65000, description="Health/metrics port of ingest; the other workers follow (+1 each)."
    )
    sample_rows: int = Field(
        20_000, ge=0, le=10_000_000,
        description="Rows of the generated sample make run writes to DATA_DIR/samples/ once (0: none).",
    )
    ready_timeout_s: float = Field(180, gt=0, description="How long make run waits for every service's /readyz.")


def is_ready(port: int, timeout_s: float = 1.0) -> bool:
    """Whether a service on this host answers 200 on ``/readyz`` at ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):
        # HTTPException too: while nothing listens on a port in the ephemeral range, the connect
        # can meet itself (a TCP self-connect) and read back its own request as the answer.
        return False


def _die_with_parent() -> None:
    """Children get SIGTERM if the supervisor itself dies (even by kill -9): no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM takes the same orderly path as Ctrl-C


@dataclass
class Child:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)


class Stack:
    def __init__(self, settings: StackSettings, services: list[str], use_embedded_broker: bool) -> None:
        self.settings = settings
        self.services = services
        self.broker = (
            EmbeddedBroker(settings.broker_port, log_file=settings.data_dir.resolve() / "logs" / "broker.log")
            if use_embedded_broker
            else None
        )
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()
        self.color = sys.stdout.isatty()

    def say(self, name: str, line: str) -> None:
        prefix = f"{name:<9}|"
        if self.color:
            prefix = f"\033[{COLORS.get(name, 0)}m{prefix}\033[0m"
        sys.stdout.write(f"{prefix} {line}\n")
        sys.stdout.flush()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.broker:
            env["CTROPS_KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap_servers
        env.setdefault("CTROPS_LOG_JSON", "false")
        env["CTROPS_DATA_DIR"] = str(self.settings.data_dir.resolve())
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # several services share few cores
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self, child: Child) -> None:
        env = self.env()
        if child.name == "gateway":
            env["CTROPS_GATEWAY_PORT"] = str(child.port)
        else:
            env["CTROPS_HTTP_PORT"] = str(child.port)
        child.process = subprocess.Popen(
            [sys.executable, "-m", f"ctrops_{child.name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        child.started = time.monotonic()
        threading.Thread(target=self._pump, args=(child.name, child.process), daemon=True).start()

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(name, raw.decode("utf-8", "replace").rstrip())

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        pending = dict(self.children)
        while pending:
            for name, child in list(pending.items()):
                if child.process and child.process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {child.process.returncode} during start-up")
                if is_ready(child.port):
                    pending.pop(name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {self.settings.ready_timeout_s:.0f}s: {', '.join(pending)}")
            time.sleep(0.3)

    def supervise(self) -> None:
        while not self.stopping.wait(1.0):
            for child in self.children.values():
                if child.process and child.process.poll() is not None and not self.stopping.is_set():
                    code = child.process.returncode
                    self.say(child.name, f"\n{'!' * 70}\n!!! {child.name} CRASHED (exit code {code}); restarting\n{'!' * 70}")
                    child.restarts += 1
                    time.sleep(min(30, 2 ** min(child.restarts, 5)))
                    if not self.stopping.is_set():
                        self.spawn(child)

    def seed_sample(self) -> Path | None:
        """A generated Toss-layout file to try the upload with, written once."""
        if not self.settings.sample_rows:
            return None
        target = self.settings.data_dir.resolve() / "samples" / f"ctr_sample_{self.settings.sample_rows}.csv"
        if not target.exists():
            from .datagen import generate

            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            generate(partial, self.settings.sample_rows, seed=42)
            for sidecar in (".truth.json", ".oracle.npy"):  # the truth, each row's generating probability
                Path(f"{partial}{sidecar}").rename(f"{target}{sidecar}")
            partial.rename(target)
        return target

    def stop(self) -> None:
        self.stopping.set()
        for child in self.children.values():
            if child.process and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + 20
        for child in self.children.values():
            if child.process:
                try:
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.say(child.name, "did not stop in time; killing")
                    child.process.kill()
                    child.process.wait()
        if self.broker:
            self.broker.stop()
            self.say("broker", "stopped")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, _interrupt)
        # A shell that backgrounds make run leaves SIGINT ignored; Ctrl-C / kill -INT must still stop us.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        (self.settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            if self.broker:
                self.broker.start()
                self.say("broker", f"tansu listening on {self.broker.bootstrap_servers} (memory-only)")
            else:
                self.say("broker", f"using external Kafka at {self.settings.kafka_bootstrap_servers}")
            started = time.monotonic()
            sample = self.seed_sample()
            for name in self.services:
                port = (self.settings.gateway_port if name == "gateway"
                        else self.settings.service_port_base + SERVICES.index(name))
                self.children[name] = Child(name, port)
                self.spawn(self.children[name])
            self.wait_ready()
            url = f"http://localhost:{self.settings.gateway_port}"
            self.say("gateway", f"all {len(self.services)} services ready in {time.monotonic() - started:.1f}s")
            self.say("gateway", f"==> {url}   API docs: {url}/docs   (Ctrl-C stops everything)")
            if sample:
                self.say("gateway", f"sample data to upload: {sample}  (or run `make demo`)")
            self.supervise()
            return 0
        except KeyboardInterrupt:
            self.say("broker", "stopping...")
            return 0
        except RuntimeError as exc:
            self.say("broker", f"start-up failed: {exc}")
            return 1
        finally:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the embedded broker and all services.")
    parser.add_argument("--services", default=",".join(SERVICES), help="comma-separated subset")
    args = parser.parse_args(argv)
    settings = load_settings(StackSettings)
    external = bool(os.environ.get("CTROPS_KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    services = [s for s in args.services.split(",") if s]
    unknown = set(services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {', '.join(sorted(unknown))}")
    return Stack(settings, services, use_embedded_broker=not external).run()


if __name__ == "__main__":
    raise SystemExit(main())
