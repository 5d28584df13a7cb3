"""The gateway's one HTTP client to the scorer's internal prediction API (CTROPS_SCORER_URL).

One ``httpx.AsyncClient`` per gateway process, opened with the app and closed with it:
a bounded pool of kept-alive connections (CTROPS_SCORER_MAX_CONNECTIONS) and a timeout
(CTROPS_SCORER_TIMEOUT_S). ``forward`` sends a prediction request on and hands back the
scorer's answer untouched (status, JSON body, Retry-After); when the scorer cannot be
reached it raises ``ScorerUnavailable``, which routes turn into a 503 with Retry-After,
as broker_gate does for the broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from .settings import GatewaySettings

log = logging.getLogger(__name__)


class ScorerUnavailable(Exception):
    """The scorer could not be reached (connection refused, reset, DNS) or did not answer in time."""

    def __init__(self, message: str, *, status_code: int = 503, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ScorerAnswer:
    status_code: int
    body: bytes
    content_type: str
    retry_after: str | None


class ScorerClient:
    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = settings.scorer_url.rstrip("/")
        self.timeout_s = settings.scorer_timeout_s
        self.retry_after_s = settings.scorer_retry_after_s
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(settings.scorer_timeout_s, connect=min(5.0, settings.scorer_timeout_s)),
            limits=httpx.Limits(max_connections=settings.scorer_max_connections,
                                max_keepalive_connections=settings.scorer_max_connections),
            transport=transport,
            trust_env=False,  # an internal address: never through an HTTP(S)_PROXY of the environment
        )

    async def forward(self, path: str, body: bytes, params: dict[str, str]) -> ScorerAnswer:
        """POST ``body`` (JSON) to ``path`` of the scorer; its answer as it came."""
        try:
            response = await self._client.post(path, content=body, params=params,
                                               headers={"content-type": "application/json"})
        except httpx.TimeoutException as exc:
            # Connecting timed out: nobody there (503); reading timed out: the scorer is there but slow (504).
            if isinstance(exc, httpx.ConnectTimeout) or isinstance(exc, httpx.PoolTimeout):
                raise self._unreachable(exc) from None
            raise ScorerUnavailable(
                f"The scoring service did not answer within {self.timeout_s:g} s (CTROPS_SCORER_TIMEOUT_S). "
                "Send fewer rows per request or try again later.", status_code=504) from None
        except httpx.HTTPError as exc:  # refused, reset, DNS, a broken answer
            raise self._unreachable(exc) from None
        return ScorerAnswer(
            status_code=response.status_code,
            body=response.content,
            content_type=response.headers.get("content-type", ""),
            retry_after=response.headers.get("retry-after"),
        )

    def _unreachable(self, exc: Exception) -> ScorerUnavailable:
        log.warning("scorer at %s unreachable: %r", self.url, exc)
        return ScorerUnavailable(
            f"The scoring service is unreachable at {self.url} (CTROPS_SCORER_URL; {type(exc).__name__}): "
            f"it may be starting or down. Try again in {self.retry_after_s} s "
            "(GET /api/health shows the services that are up).",
            retry_after_s=self.retry_after_s,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
