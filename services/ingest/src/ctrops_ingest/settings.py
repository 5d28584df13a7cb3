"""Settings of the ingest service (environment variables with the CTROPS_ prefix)."""

from ctrops_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    pass
