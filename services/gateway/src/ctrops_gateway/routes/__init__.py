"""One router per area of the contract (../shared/spec/api-contract.md)."""

from . import dashboards, explain, feature_mapping, health, performance, reports, train, upload

ROUTERS = [health.router, upload.router, train.router, explain.router, reports.router, performance.router, dashboards.router,
           feature_mapping.router]
