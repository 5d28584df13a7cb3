"""Wiring only: settings -> runtime (bus, store, health server) -> handlers + internal API -> run."""

from ctrops_common.service import ServiceRuntime
from ctrops_common.settings import load_settings

from . import handlers
from .settings import ScorerSettings


def main() -> None:
    settings = load_settings(ScorerSettings)
    runtime = ServiceRuntime("scorer", settings)
    handlers.register(runtime, settings)
    runtime.run()


if __name__ == "__main__":
    main()
