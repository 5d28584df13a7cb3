"""One router per area of the contract (../shared/spec/api-contract.md)."""

from . import dashboards, health, performance, reports, train, upload

ROUTERS = [health.router, upload.router, train.router, reports.router, performance.router, dashboards.router]
