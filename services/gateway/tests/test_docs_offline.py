"""/docs and /redoc work with no network: headless Chromium, every request but loopback cut.

The gateway runs as a real process (uvicorn, every middleware). Chromium (Debian package
``chromium``, installed by ``make tools``) gets a proxy on a closed port and a resolver that
knows no host but 127.0.0.1, so only the gateway itself can answer; a control page that loads
Swagger UI from its CDN proves the cut holds. Then:

- /docs (Swagger UI) renders every operation of /openapi.json as an ``.opblock``, with no
  Content-Security-Policy violation and no failed load;
- /redoc (ReDoc) renders every operation (its ``operation/<operationId>`` anchors); the only
  thing refused is ReDoc's "powered by" logo on cdn.redoc.ly (the CSP blocks it: no request leaves);
- the frontend's API-tester iframe: a page on an origin the gateway allows (its CORS origin)
  frames /docs and Swagger UI renders inside it (its GET badges are on a screenshot); the same
  page on another origin is refused by ``frame-ancestors``.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from ctrops_common.broker import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
CDN_SWAGGER = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"


def chromium(url: str, profile: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """The DOM after the page's scripts ran (virtual time), and the console log; network cut.
    With ``screenshot``, a 1280x1000 PNG of the page instead of the DOM (frames included)."""
    assert CHROMIUM, "chromium missing: run `make tools` (Debian package chromium) or apt-get install chromium"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", f"--user-data-dir={profile}",
        # The network cut: every request goes to a proxy on a closed port (loopback is never
        # proxied), and no name resolves but 127.0.0.1.
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=30000",
        *([f"--screenshot={screenshot}", "--window-size=1280,1000"] if screenshot else ["--dump-dom"]), url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout, result.stderr


def console(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def operations(schema: dict) -> list[tuple[str, str, str]]:
    return [(method.upper(), path, op["operationId"]) for path, item in schema["paths"].items()
            for method, op in item.items() if method in METHODS]


def get_badge_pixels(png: Path) -> int:
    """Pixels of Swagger UI's GET badge colour (#61affe): the operation list is on screen."""
    from PIL import Image

    with Image.open(png) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    return sum(count for count, (r, g, b) in colors if abs(r - 0x61) < 12 and abs(g - 0xAF) < 12 and abs(b - 0xFE) < 12)


def refs(node) -> set[str]:
    if isinstance(node, dict):
        return {node["$ref"]} if isinstance(node.get("$ref"), str) else set().union(*map(refs, node.values()))
    if isinstance(node, list):
        return set().union(*map(refs, node)) if node else set()
    return set()


def test_every_ref_of_the_schema_resolves(gateway_client):
    """A ``$ref`` to a missing target (pydantic's ``#/$defs/...``) stops ReDoc rendering the whole page."""
    schema = gateway_client.get("/openapi.json").json()
    for ref in refs(schema):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schema["components"]["schemas"], ref


@pytest.fixture
def frontend_origins(tmp_path: Path):
    """Two local web servers serving the same page that frames the gateway's /docs: (allowed, refused)."""
    site = tmp_path / "site"
    site.mkdir()
    servers = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", free_port()),
                                     functools.partial(SimpleHTTPRequestHandler, directory=str(site)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield site, [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(600)
def test_docs_and_redoc_list_the_operations_with_the_network_cut(start_service, frontend_origins, tmp_path):
    site, (allowed, refused) = frontend_origins
    gateway = start_service("gateway", {"CTROPS_CORS_ORIGINS": allowed})
    base = f"http://127.0.0.1:{gateway.port}"
    expected = operations(httpx.get(f"{base}/openapi.json").json())
    assert len(expected) >= 15 and ("GET", "/api/health", "health_api_health_get") in expected

    # The control: with the same flags a CDN-hosted Swagger UI does not load, so the cut holds.
    control = tmp_path / "cdn.html"
    control.write_text(f'<html><body><script src="{CDN_SWAGGER}"></script>'
                       '<script>document.body.dataset.bundle = typeof SwaggerUIBundle;</script></body></html>')
    dom, _ = chromium(control.as_uri(), tmp_path / "profile-control")
    assert 'data-bundle="undefined"' in dom, dom[-2000:]

    # Swagger UI: one .opblock per operation, every asset from the gateway.
    dom, log = chromium(f"{base}/docs", tmp_path / "profile-docs")
    blocks = re.findall(r'class="opblock opblock-(\w+)[^"]*"', dom)
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert len(blocks) == len(expected), (len(blocks), len(expected), dom[-3000:])
    assert paths == {path for _, path, _ in expected}
    assert sorted(blocks) == sorted(method.lower() for method, _, _ in expected)
    assert not [line for line in console(log) if "Content Security Policy" in line or "Failed to load" in line], log

    # ReDoc: every operation's anchor; only its "powered by" logo (a CDN image) is refused, by the CSP.
    dom, log = chromium(f"{base}/redoc", tmp_path / "profile-redoc")
    missing = [op_id for _, _, op_id in expected if f'id="operation/{op_id}"' not in dom]
    assert not missing, (missing, dom[-3000:])
    refusals = [line for line in console(log) if "Content Security Policy" in line or "Failed to load" in line]
    assert all("cdn.redoc.ly" in line for line in refusals), refusals

    # The frontend's API-tester iframe: on an origin the gateway allows, Swagger UI renders inside
    # it (its GET badges are on the screenshot); on another origin frame-ancestors refuses it.
    (site / "index.html").write_text(f'<html><body><iframe src="{base}/docs" width="1200" height="900">'
                                     "</iframe></body></html>")
    _, log = chromium(f"{allowed}/index.html", tmp_path / "profile-allowed", tmp_path / "allowed.png")
    assert get_badge_pixels(tmp_path / "allowed.png") > 500, log[-3000:]
    assert not [line for line in console(log) if "Content Security Policy" in line], log[-3000:]
    _, log = chromium(f"{refused}/index.html", tmp_path / "profile-refused", tmp_path / "refused.png")
    assert get_badge_pixels(tmp_path / "refused.png") == 0
    assert any("frame-ancestors" in line for line in console(log)), log[-3000:]

    gateway.stop()
    assert "Traceback" not in gateway.log(), gateway.log()[-8000:]
