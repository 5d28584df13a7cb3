"""Wiring only: settings -> app -> uvicorn on port 8000."""

import uvicorn

from ctrops_common.observability import setup_logging
from ctrops_common.settings import load_settings

from .app import create_app
from .header_deadline import header_deadline_protocol
from .settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    setup_logging("gateway", settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        # httptools (what "auto" picks) with a request-header deadline: uvicorn has none (header slowloris)
        http=header_deadline_protocol(settings.request_header_timeout_s),
        proxy_headers=False,  # forwarded headers only from CTROPS_TRUSTED_PROXIES (proxies.py), not 127.0.0.1
        ws_ping_interval=20,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
