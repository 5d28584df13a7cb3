"""Settings of the reporter service (environment variables with the CTROPS_ prefix)."""

from ctrops_common.settings import ServiceSettings


class ReporterSettings(ServiceSettings):
    pass
