"""Which events the explainer service consumes and publishes."""

from ctrops_common.service import ServiceRuntime

from .settings import ExplainerSettings


def register(runtime: ServiceRuntime, settings: ExplainerSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
