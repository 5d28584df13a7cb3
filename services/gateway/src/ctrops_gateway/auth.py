"""Optional authentication for the gateway (off by default, on in production); roles: security.py.

Credentials, checked in one place (``AuthMiddleware``) before any route runs:
- API keys: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. Configured with
  ``CTROPS_AUTH_API_KEYS`` as ``key:role:client`` entries, comma-separated, or hashed
  ``sha256:<hex of sha256(key)>:role:client`` so the Secret need not hold the key itself.
  Only SHA-256 digests are kept in memory and compared in constant time.
- JWT bearer tokens (PyJWT): ``Authorization: Bearer <jwt>`` signed with
  ``CTROPS_AUTH_JWT_SECRET`` (HS256/384/512) or verified with ``CTROPS_AUTH_JWT_PUBLIC_KEY``
  (RS*/ES*/PS*/EdDSA). ``exp`` and ``sub`` (the client id) are required; the role is the
  ``role`` claim (or the highest known entry of a ``roles`` list).
- WebSockets also accept ``?token=<jwt or key>`` (browsers cannot set headers on a
  WebSocket). Query tokens are redacted from uvicorn's log lines.

Who must authenticate (``needs_credentials``): with auth on, every request under /api and /ws
except the open paths (GET /api/health, /healthz, /readyz, /metrics, /docs, /docs/oauth2-redirect,
/redoc, /openapi.json) and CORS preflights (OPTIONS); the frontend's own files need nothing (the
data behind them is what is guarded). No or invalid credentials: HTTP 401 with
``WWW-Authenticate``, JSON ``{"detail": ...}`` (a JWT with no known role: 403); WebSockets are
accepted and closed at once with code 1008 (policy violation) and the reason, so browsers see it.

Which role a route needs is not decided here: each route declares it as a FastAPI dependency
(``security.Viewer`` / ``security.Operator``: reads and both WebSockets viewer; every mutating
route and GET /api/audit operator), which answers 403 when the role is too low, and puts the
route's security requirement in the OpenAPI schema. This middleware only says who is calling.
Secrets are never logged; the only trace of a client is its configured client id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from .caller import ANONYMOUS, ANONYMOUS_OPERATOR, Principal, Role, method_of, set_principal

if TYPE_CHECKING:
    from .settings import GatewaySettings

log = logging.getLogger(__name__)

REALM = "ctrops"
WS_POLICY_VIOLATION = 1008
MIN_KEY_LENGTH = 16
MIN_HMAC_SECRET_LENGTH = 32
HMAC_ALGORITHMS = {"HS256", "HS384", "HS512"}

# Reachable without credentials (probes, metrics scrapers, the API docs and their schema).
OPEN_PATHS = frozenset(
    {"/api/health", "/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)

def needs_credentials(method: str, path: str) -> bool:
    """Whether this request must come with valid credentials (auth on): the API and its
    WebSockets do, but for the open paths and CORS preflights; the frontend's files do not.
    Which role a route needs is declared on the route (security.py), not here."""
    if method == "OPTIONS" or path in OPEN_PATHS:
        return False
    return path.startswith(("/api/", "/ws/")) or path in ("/api", "/ws")


AUTHENTICATION_REQUIRED = ("Authentication required: send an API key in the X-API-Key header or a token in "
                           "'Authorization: Bearer <token>' (WebSockets: add ?token=<token>).")


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    digest: bytes  # sha256 of the key; the key itself is not kept
    role: Role
    client_id: str


_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")


def parse_api_keys(raw: str) -> list[ApiKey]:
    """``key:role:client`` or ``sha256:<hex>:role:client`` entries, comma-separated.

    Error messages never repeat a key: they name the entry by its position."""
    keys: list[ApiKey] = []
    clients: set[str] = set()
    for position, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) == 4 and parts[0].lower() == "sha256":
            _, digest_hex, role_text, client = parts
            if not _HEX64.match(digest_hex):
                raise ValueError(f"API key entry {position}: sha256 form needs 64 hex digits")
            digest = bytes.fromhex(digest_hex)
        elif len(parts) == 3:
            key, role_text, client = parts
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"API key entry {position}: keys need at least {MIN_KEY_LENGTH} characters")
            digest = hashlib.sha256(key.encode()).digest()
        else:
            raise ValueError(f"API key entry {position}: expected key:role:client or sha256:<hex>:role:client")
        try:
            role = Role.parse(role_text)
        except ValueError as exc:
            raise ValueError(f"API key entry {position}: {exc}") from None
        if not _CLIENT_ID.match(client):
            raise ValueError(f"API key entry {position}: client id must be 1-100 of A-Z a-z 0-9 . _ @ -")
        if client in clients:
            raise ValueError(f"API key entry {position}: client id {client!r} is used twice")
        clients.add(client)
        keys.append(ApiKey(digest, role, client))
    return keys


def check_auth_settings(settings: GatewaySettings) -> None:
    """Fail fast on a configuration that cannot authenticate anyone (raises ValueError)."""
    if settings.auth_api_keys is not None:
        parse_api_keys(settings.auth_api_keys.get_secret_value())
    algorithms = settings.auth_jwt_algorithm_list
    secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else ""
    if secret and len(secret) < MIN_HMAC_SECRET_LENGTH:
        raise ValueError(f"CTROPS_AUTH_JWT_SECRET needs at least {MIN_HMAC_SECRET_LENGTH} characters")
    if secret and not set(algorithms) & HMAC_ALGORITHMS:
        raise ValueError("CTROPS_AUTH_JWT_SECRET is set but CTROPS_AUTH_JWT_ALGORITHMS lists no HS* algorithm")
    if settings.auth_jwt_public_key and not set(algorithms) - HMAC_ALGORITHMS:
        raise ValueError("CTROPS_AUTH_JWT_PUBLIC_KEY is set but CTROPS_AUTH_JWT_ALGORITHMS lists only HS* algorithms")
    if settings.auth_enabled and not (settings.auth_api_keys or secret or settings.auth_jwt_public_key):
        raise ValueError(
            "CTROPS_AUTH_ENABLED=true needs credentials to check: set CTROPS_AUTH_API_KEYS and/or "
            "CTROPS_AUTH_JWT_SECRET (or CTROPS_AUTH_JWT_PUBLIC_KEY)"
        )


# -- checking credentials -----------------------------------------------------------------


class AuthError(Exception):
    """401 (no/invalid credentials) or 403 (a token with no known role; security.py: role too low)."""

    def __init__(self, status: int, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error = error  # RFC 6750 error code for WWW-Authenticate

    def challenge(self) -> str:
        value = f'Bearer realm="{REALM}"'
        if self.error:
            value += f', error="{self.error}", error_description="{self.detail[:200].replace(chr(34), chr(39))}"'
        return value + f', ApiKey realm="{REALM}", header="X-API-Key"'


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class Authenticator:
    def __init__(self, settings: GatewaySettings) -> None:
        check_auth_settings(settings)
        self.enabled = settings.auth_enabled
        self.keys = parse_api_keys(settings.auth_api_keys.get_secret_value()) if settings.auth_api_keys else []
        self.algorithms = settings.auth_jwt_algorithm_list
        secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else ""
        self.jwt_keys: list[tuple[list[str], Any]] = []
        if secret:
            self.jwt_keys.append(([a for a in self.algorithms if a in HMAC_ALGORITHMS], secret))
        if settings.auth_jwt_public_key:
            self.jwt_keys.append(([a for a in self.algorithms if a not in HMAC_ALGORITHMS],
                                  settings.auth_jwt_public_key))
        self.audience = settings.auth_jwt_audience or None
        self.issuer = settings.auth_jwt_issuer or None
        self.leeway = settings.auth_jwt_leeway_s

    # credentials -> principal ----------------------------------------------------------

    def credentials(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() not in ("bearer", "apikey") or not value.strip():
                raise AuthError(401, "Unsupported Authorization header: use 'Bearer <token>' or the X-API-Key header.",
                                "invalid_request")
            return value.strip()
        if headers.get("x-api-key"):
            return headers["x-api-key"].strip()
        if scope["type"] == "websocket":
            query = QueryParams(scope.get("query_string", b""))
            return query.get("token") or query.get("access_token") or query.get("api_key")
        return None

    def authenticate(self, token: str) -> Principal:
        if _looks_like_jwt(token) and self.jwt_keys:
            return self._jwt(token)
        principal = self._api_key(token)
        if principal is not None:
            return principal
        if _looks_like_jwt(token):
            raise AuthError(401, "Bearer tokens (JWT) are not accepted here: no JWT key is configured.",
                            "invalid_token")
        raise AuthError(401, "The API key is not recognised.", "invalid_token")

    def _api_key(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: ApiKey | None = None
        for key in self.keys:  # compare with every key, in constant time each
            if hmac.compare_digest(digest, key.digest):
                found = key
        return Principal(found.client_id, found.role, "api_key") if found else None

    def _jwt(self, token: str) -> Principal:
        last: Exception | None = None
        for algorithms, key in self.jwt_keys:
            if not algorithms:
                continue
            try:
                claims = jwt.decode(
                    token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                    leeway=self.leeway, options={"require": ["exp", "sub"]},
                )
                break
            except jwt.InvalidSignatureError as exc:
                last = exc
            except jwt.InvalidAlgorithmError as exc:
                last = exc
            except jwt.ExpiredSignatureError:
                raise AuthError(401, "The token has expired; get a new one.", "invalid_token") from None
            except jwt.MissingRequiredClaimError as exc:
                raise AuthError(401, f"The token lacks the required claim '{exc.claim}'.", "invalid_token") from None
            except jwt.InvalidAudienceError:
                raise AuthError(401, "The token is for another audience.", "invalid_token") from None
            except jwt.InvalidIssuerError:
                raise AuthError(401, "The token comes from an untrusted issuer.", "invalid_token") from None
            except jwt.InvalidTokenError as exc:
                raise AuthError(401, f"The token is invalid ({type(exc).__name__}).", "invalid_token") from None
        else:
            reason = "its signature does not verify" if isinstance(last, jwt.InvalidSignatureError) else (
                "it is signed with an algorithm this gateway does not accept")
            raise AuthError(401, f"The token is invalid: {reason}.", "invalid_token")
        client_id = str(claims["sub"])[:200]
        role = _role_from_claims(claims)
        if role is None:
            raise AuthError(403, f"The token of client '{client_id}' carries no known role (viewer, operator or admin).",
                            "insufficient_scope")
        return Principal(client_id, role, "jwt")

    # the decision ---------------------------------------------------------------------------

    def decide(self, scope: Scope) -> Principal:
        """The principal of this request, or AuthError (401, or 403 for a token with no known role)."""
        if not self.enabled:
            return ANONYMOUS_OPERATOR
        if not needs_credentials(method_of(scope), scope.get("path", "")):
            return ANONYMOUS
        token = self.credentials(scope)
        if not token:
            raise AuthError(401, AUTHENTICATION_REQUIRED)
        return self.authenticate(token)


def _role_from_claims(claims: dict[str, Any]) -> Role | None:
    values: list[Any] = []
    if "role" in claims:
        values.append(claims["role"])
    if isinstance(claims.get("roles"), list):
        values.extend(claims["roles"])
    roles = []
    for value in values:
        if isinstance(value, str):
            try:
                roles.append(Role.parse(value))
            except ValueError:
                continue
    return max(roles) if roles else None


# -- the middleware ----------------------------------------------------------------------------


class AuthMiddleware:
    """Sets ``scope["state"]["principal"]``; refuses invalid or missing credentials with 401 (a JWT
    with no known role: 403) over HTTP, close 1008 on a WebSocket. Roles are the routes' (security.py)."""

    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.auth = Authenticator(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            principal = self.auth.decide(scope)
        except AuthError as exc:
            if scope["type"] == "websocket":
                await refuse_websocket(receive, send, exc.detail)
            else:
                await send_json_error(send, exc.status, exc.detail, {"www-authenticate": exc.challenge()})
            return
        set_principal(scope, principal)
        await self.app(scope, receive, send)


async def send_json_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def refuse_websocket(receive: Receive, send: Send, reason: str, code: int = WS_POLICY_VIOLATION) -> None:
    """Accept, then close with ``code``: a close before accept would reach the browser as a bare
    HTTP 403 (close code 1006), hiding why."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    encoded = reason.encode()[:123]  # a close reason is at most 123 bytes
    await send({"type": "websocket.close", "code": code, "reason": encoded.decode("utf-8", "ignore")})


# -- keeping secrets out of the logs -----------------------------------------------------------

_QUERY_SECRET = re.compile(r"((?:^|[?&])(?:token|access_token|api_key)=)[^&\s\"']*", re.IGNORECASE)
# Header lines as the WebSocket and HTTP protocols log them at DEBUG ("< authorization: Bearer ...").
_HEADER_SECRET = re.compile(
    r"((?:^|[\s<>'\"(,])(?:authorization|proxy-authorization|x-api-key|cookie|set-cookie)['\"]?\s*[:=,]\s*['\"]?)"
    r"[^\r\n'\"]*", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # a JWT wherever it appears


def redact(text: str) -> str:
    text = _QUERY_SECRET.sub(r"\1***", text)
    text = _HEADER_SECRET.sub(r"\1***", text)
    return _JWT.sub("eyJ***", text)


class RedactTokens(logging.Filter):
    """Keys and tokens out of every log line: query tokens in uvicorn's request lines
    (``/ws/performance?token=...``), credential headers the WebSocket and HTTP protocols log at
    DEBUG, and anything shaped like a JWT. The message is rendered and redacted whole (a header
    logged as ``"< %s: %s"`` has its name and value in separate arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: leave it to the handler's own error path
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction() -> None:
    """On every handler of the root logger (every logger's records pass one) and on uvicorn's loggers."""
    targets: list[logging.Filterer] = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error", "uvicorn")]
    targets += logging.getLogger().handlers
    for target in targets:
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())
