"""Which events the trainer service consumes and publishes."""

from ctrops_common.service import ServiceRuntime

from .settings import TrainerSettings


def register(runtime: ServiceRuntime, settings: TrainerSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
