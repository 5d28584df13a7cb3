"""What the gateway's routes share, and typed dependencies to reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ctrops_common.bus import EventBus
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import FileStore

from .broker_probe import BrokerProbe
from .live import Hub, Replies
from .scorer_client import ScorerClient
from .settings import GatewaySettings
from .traffic import Traffic
from .views import ReadModel


@dataclass
class GatewayState:
    settings: GatewaySettings
    runtime: ServiceRuntime
    views: ReadModel
    hub: Hub = field(default_factory=Hub)
    replies: Replies = field(default_factory=Replies)
    traffic: Traffic = field(default_factory=Traffic)
    broker_probe: BrokerProbe = field(default_factory=BrokerProbe)  # /api/health's broker check, kept 1 s
    scorer: ScorerClient | None = None  # the proxy's client to the scorer, opened with the app

    def scorer_client(self) -> ScorerClient:
        if self.scorer is None:  # a state built without the app's lifespan (tests of one part)
            self.scorer = ScorerClient(self.settings)
        return self.scorer

    @property
    def bus(self) -> EventBus:
        return self.runtime.bus

    @property
    def store(self) -> FileStore:
        return self.runtime.store


async def get_state(request: Request) -> GatewayState:  # async: FastAPI runs a plain def in a thread
    return request.app.state.gateway


State = Annotated[GatewayState, Depends(get_state)]
