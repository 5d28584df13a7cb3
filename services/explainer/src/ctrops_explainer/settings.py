"""Settings of the explainer service (environment variables with the CTROPS_ prefix)."""

from ctrops_common.settings import ServiceSettings


class ExplainerSettings(ServiceSettings):
    pass
