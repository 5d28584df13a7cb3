"""One router per area of the contract (../shared/spec/api-contract.md)."""

from . import dashboards, explain, feature_mapping, health, performance, predict, reports, retrain, train, upload

ROUTERS = [health.router, upload.router, train.router, retrain.router, explain.router, reports.router,
           performance.router, dashboards.router, feature_mapping.router, predict.router]
