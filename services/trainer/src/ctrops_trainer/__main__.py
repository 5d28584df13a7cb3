"""Wiring only: settings -> runtime (bus, store, health server) -> handlers -> run."""

from ctrops_common.service import ServiceRuntime
from ctrops_common.settings import load_settings

from . import handlers
from .settings import TrainerSettings


def main() -> None:
    settings = load_settings(TrainerSettings)
    runtime = ServiceRuntime("trainer", settings)
    handlers.register(runtime, settings)
    runtime.run()


if __name__ == "__main__":
    main()
