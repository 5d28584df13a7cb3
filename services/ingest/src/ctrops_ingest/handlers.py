"""Which events the ingest service consumes and publishes."""

from ctrops_common.service import ServiceRuntime

from .settings import IngestSettings


def register(runtime: ServiceRuntime, settings: IngestSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
