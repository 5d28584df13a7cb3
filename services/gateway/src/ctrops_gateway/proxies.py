"""The client's address behind a reverse proxy, believed only from proxies the operator listed.

``X-Forwarded-For`` and ``Forwarded`` (RFC 7239) are plain request headers: anyone can send
them. The rate limits and the audit trail key on the client's address, so the gateway takes
it from these headers only when the TCP peer is a configured proxy
(``CTROPS_TRUSTED_PROXIES``: addresses and CIDRs, comma-separated; default none, so the peer
address is always used). uvicorn's own proxy handling, which trusts 127.0.0.1 by default, is
switched off (``__main__``).

With a trusted peer the forwarded chain is read from the right (the hop nearest to the
gateway): trusted proxies are skipped and the first address that is not one is the client.
``X-Forwarded-Proto`` (or ``proto=`` of ``Forwarded``) sets the scheme the same way.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[list[Network], bool]:
    """(networks, trust everyone) from 'a, b/24, ...'; '*' trusts any peer. ValueError names a bad entry."""
    networks: list[Network] = []
    everyone = False
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        if entry == "*":
            everyone = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"CTROPS_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None
    return networks, everyone


_FORWARDED_PAIR = re.compile(r'(?i)\b(for|proto)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


def _forwarded_hops(values: Iterable[str]) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded`` elements, in order, as {"for": ..., "proto": ...}."""
    hops: list[dict[str, str]] = []
    for value in values:
        for element in value.split(","):
            hop = {}
            for key, raw in _FORWARDED_PAIR.findall(element):
                hop[key.lower()] = raw.strip('"')
            if hop:
                hops.append(hop)
    return hops


def _address(node: str) -> str:
    """'[2001:db8::1]:4711' -> '2001:db8::1'; '192.0.2.1:80' -> '192.0.2.1'; names stay as they are."""
    node = node.strip()
    if node.startswith("["):
        return node[1:node.find("]")] if "]" in node else node[1:]
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


class TrustedProxies:
    def __init__(self, raw: str) -> None:
        self.networks, self.everyone = parse_networks(raw)

    @property
    def enabled(self) -> bool:
        return self.everyone or bool(self.networks)

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def resolve(self, peer: str, headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None]:
        """(client address, scheme or None) for a request from ``peer``."""
        if not self.trusts(peer):
            return peer, None
        forwarded = [v.decode("latin-1") for k, v in headers if k.lower() == b"forwarded"]
        xff = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
        proto = next((v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-proto"), None)
        if forwarded:
            hops = _forwarded_hops(forwarded)
            chain = [_address(h["for"]) for h in hops if "for" in h]
            protos = [h["proto"] for h in hops if "proto" in h]
            proto = protos[-1] if protos else proto
        else:
            chain = [_address(a) for v in xff for a in v.split(",") if a.strip()]
        if not chain:
            return peer, _scheme(proto)
        for address in reversed(chain):
            if not self.trusts(address):
                return address[:64], _scheme(proto)
        return chain[0][:64], _scheme(proto)


def _scheme(proto: str | None) -> str | None:
    proto = (proto or "").split(",")[-1].strip().lower()
    return proto if proto in ("http", "https", "ws", "wss") else None


class ProxyHeadersMiddleware:
    """Sets ``scope["client"]`` (and the scheme) from the forwarded headers of a trusted proxy."""

    def __init__(self, app: ASGIApp, trusted: str) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies.enabled and scope.get("client"):
            host, port = scope["client"]
            client, scheme = self.proxies.resolve(str(host), scope.get("headers") or [])
            if client != host:
                scope["client"] = (client, 0)
            if scheme:
                websocket = scope["type"] == "websocket"
                secure = scheme in ("https", "wss")
                scope["scheme"] = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
        await self.app(scope, receive, send)
