"""Settings of the monitor service (environment variables with the CTROPS_ prefix)."""

from ctrops_common.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    pass
