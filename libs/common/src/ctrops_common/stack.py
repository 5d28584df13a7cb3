"""``make run``: the embedded broker plus the seven services as separate processes.

Prefixes each service's log lines, waits until every service answers /readyz, prints the
gateway URL, restarts a service or the embedded broker when it crashes (and says so
loudly, with the same backoff), and on Ctrl-C, SIGTERM or SIGHUP stops the services first
and the broker last, leaving no process or port behind:

- the first signal starts the stop; any further signal is counted and ignored, so a second
  Ctrl-C (or SIGTERM to the whole process group right after one) never aborts it halfway;
- the signal handler only raises while the supervisor waits or starts up, never inside a
  spawn or a restart, so no child is started untracked;
- every child (the broker too) gets SIGTERM if the supervisor itself dies, even by kill -9
  (``PR_SET_PDEATHSIG``), and log lines to a closed stdout are dropped, never fatal.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from .broker import EmbeddedBroker, die_with_parent
from .service import PLATFORM_SERVICES
from .settings import CommonSettings, load_settings

# The gateway last: it proxies predictions to the scorer's internal API (CTROPS_SCORER_URL).
SERVICES = list(PLATFORM_SERVICES)
COLORS = {"broker": 90, "ingest": 36, "trainer": 33, "explainer": 35, "reporter": 32, "monitor": 34, "scorer": 96,
          "gateway": 97}


class StackSettings(CommonSettings):
    broker_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded broker.")
    gateway_port: int = Field(8000, ge=1, le=65535, description="Port of the gateway's API.")
    service_port_base: int = Field(
        8101, ge=1, le=65000, description="Health/metrics port of ingest; the other workers follow (+1 each)."
    )
    scorer_api_port: int = Field(
        8090, ge=1, le=65535,
        description="Port of the scorer's internal prediction API; make run points the gateway's CTROPS_SCORER_URL at it.",
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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def backoff_s(restarts: int) -> float:
    """Wait before the n-th restart of a crashed child (service or broker): 2, 4, ... 30 s."""
    return min(30, 2 ** min(restarts, 5))


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
        self.broker_restarts = 0
        # Set by the signal handler (a plain flag: no lock may be taken inside a handler).
        self.stop_requested = False
        self.ignored_signals = 0
        self._interruptible = True  # whether the handler may raise KeyboardInterrupt right now

    def say(self, name: str, line: str) -> None:
        prefix = f"{name:<9}|"
        if self.color:
            prefix = f"\033[{COLORS.get(name, 0)}m{prefix}\033[0m"
        try:
            sys.stdout.write(f"{prefix} {line}\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # whoever read our output is gone (a closed pipe, a dead terminal): keep supervising, keep stopping

    def loud(self, name: str, line: str) -> None:
        self.say(name, f"\n{'!' * 70}\n!!! {line}\n{'!' * 70}")

    # -- signals --------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_requested:
            self.ignored_signals += 1  # already stopping: the stop goes on to the end
            return
        self.stop_requested = True
        if self._interruptible:
            raise KeyboardInterrupt  # SIGTERM and SIGHUP take the same orderly path as Ctrl-C

    @contextmanager
    def _shielded(self) -> Iterator[None]:
        """No KeyboardInterrupt inside (a half-done spawn would leave a child nobody tracks);
        a stop asked for meanwhile is raised right after."""
        previous, self._interruptible = self._interruptible, False
        try:
            yield
        finally:
            self._interruptible = previous
        if previous and self.stop_requested:
            raise KeyboardInterrupt

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake for a stop within 0.1 s."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.broker:
            env["CTROPS_KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap_servers
        env.setdefault("CTROPS_LOG_JSON", "false")
        env["CTROPS_DATA_DIR"] = str(self.settings.data_dir.resolve())
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # several services share few cores
        env["PYTHONUNBUFFERED"] = "1"
        # The scorer's internal API and where the gateway finds it: one port, both sides told.
        env["CTROPS_SCORER_API_PORT"] = str(self.settings.scorer_api_port)
        env.setdefault("CTROPS_SCORER_URL", f"http://127.0.0.1:{self.settings.scorer_api_port}")
        return env

    def spawn(self, child: Child) -> None:
        env = self.env()
        if child.name == "gateway":
            env["CTROPS_GATEWAY_PORT"] = str(child.port)
        else:
            env["CTROPS_HTTP_PORT"] = str(child.port)
        with self._shielded():
            child.process = subprocess.Popen(
                [sys.executable, "-m", f"ctrops_{child.name}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent(),  # SIGTERM if the supervisor dies, even by kill -9: no orphans
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
        """Restart whatever died until a stop is asked for. Runs with the handler not raising:
        a signal only sets the flag, seen here within 0.1 s."""
        self._interruptible = False
        while not self.stop_requested and not self.stopping.is_set():
            self._check_broker()
            for child in self.children.values():
                if self.stop_requested:
                    break
                if child.process and child.process.poll() is not None:
                    code = child.process.returncode
                    child.restarts += 1
                    wait = backoff_s(child.restarts)
                    self.loud(child.name, f"{child.name} CRASHED (exit code {code}); restarting in {wait:.0f}s "
                                          f"(crash #{child.restarts})")
                    self._sleep(wait)
                    if not self.stop_requested:
                        self.spawn(child)
            self._sleep(1.0)

    def _check_broker(self) -> None:
        """The embedded broker is supervised like a service: a crash is counted, announced, and
        the broker restarted on the same port after the same backoff. It comes back empty
        (memory-only); the services reconnect to it on their own."""
        broker = self.broker
        if broker is None or (broker.process is not None and broker.process.poll() is None):
            return
        code = broker.process.returncode if broker.process is not None else None
        self.broker_restarts += 1
        wait = backoff_s(self.broker_restarts)
        self.loud("broker", f"broker CRASHED (exit code {code}); restarting on {broker.bootstrap_servers} "
                            f"in {wait:.0f}s (crash #{self.broker_restarts}; it comes back empty: memory-only)")
        self._sleep(wait)
        if self.stop_requested:
            return
        try:
            with self._shielded():
                broker.start()
        except RuntimeError as exc:  # the process is left dead (or None): the next turn tries again
            self.say("broker", f"restart failed: {exc}")
            return
        self.say("broker", f"tansu listening again on {broker.bootstrap_servers} (restart #{self.broker_restarts})")

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
        """Services first, the broker last; never interrupted (signals meanwhile are only counted)."""
        self.stop_requested = True
        self._interruptible = False
        self.stopping.set()
        self.say("broker", "stopping...")
        try:
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
        finally:
            if self.broker:
                self.broker.stop()
                self.say("broker", "stopped")
            if self.ignored_signals:
                self.say("broker", f"{self.ignored_signals} more stop signal(s) arrived while stopping; "
                                   "the stop went on to the end")

    def run(self) -> int:
        # SIGINT too: a shell that backgrounds make run leaves it ignored; Ctrl-C / kill -INT must still stop us.
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        (self.settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            if self.broker:
                with self._shielded():
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
        except KeyboardInterrupt:  # a stop asked for during start-up
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
