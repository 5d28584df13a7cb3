"""Which events the monitor service consumes and publishes."""

from ctrops_common.service import ServiceRuntime

from .settings import MonitorSettings


def register(runtime: ServiceRuntime, settings: MonitorSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
