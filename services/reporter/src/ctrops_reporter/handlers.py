"""Which events the reporter service consumes and publishes."""

from ctrops_common.service import ServiceRuntime

from .settings import ReporterSettings


def register(runtime: ServiceRuntime, settings: ReporterSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
