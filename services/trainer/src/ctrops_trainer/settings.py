"""Settings of the trainer service (environment variables with the CTROPS_ prefix)."""

from ctrops_common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    pass
