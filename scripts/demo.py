"""``make demo``: the whole job against a running ``make run``, the way a newcomer would do it.

Generates a Toss-layout sample, uploads it, trains with live progress from the WebSocket,
waits for the explanation and the report, prints the top features with p-values and the
key metrics, and saves the PDF under ``out/``. Only the public API of the gateway is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from ctrops_common.datagen import generate


def bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def wait_for(client: httpx.Client, path: str, what: str, timeout_s: float) -> httpx.Response:
    """Poll ``path`` until it answers 200; 404/409 mean 'not yet', anything else is an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(path)
        if response.status_code == 200:
            return response
        if response.status_code not in (404, 409, 425, 503) or time.monotonic() > deadline:
            raise SystemExit(f"{what} failed: HTTP {response.status_code} {response.text[:500]}")
        time.sleep(1)


async def follow_training(ws_url: str, epochs: int) -> dict:
    async with websockets.connect(ws_url, open_timeout=10) as socket:
        seen = 0
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=900))
            kind = message.get("type")
            if kind == "epoch_update":
                seen = message["epoch"]
                m = message["metrics"]
                auc = m.get("auc")
                print(f"\r  {bar(seen, message.get('total_epochs', epochs))}  val_loss {m['val_loss']:.4f}"
                      + (f"  val AUC {auc:.3f}" if auc is not None else ""), end="", flush=True)
            elif kind == "log":
                print(f"\n  {message['message']}", end="", flush=True)
            elif kind == "training_complete":
                print()
                return message.get("metrics", {})
            elif kind == "training_failed":
                raise SystemExit(f"\ntraining failed: {message.get('error')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each stage")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    client = httpx.Client(base_url=args.url, timeout=args.timeout)
    try:
        health = client.get("/api/health").json()
    except httpx.HTTPError as exc:
        raise SystemExit(f"no gateway at {args.url} ({exc}); start the platform with `make run` first")
    print(f"platform: {health['status']} ({', '.join(k for k, v in health['services'].items() if v['status'] == 'up')} up)")

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "demo_ctr.csv"
        truth = generate(sample, args.rows, seed=42)
        print(f"1/5 generated {sample.name}: {truth['rows']:,} rows, {truth['clicks']:,} clicks "
              f"(CTR {truth['ctr_percent']}%)")
        with open(sample, "rb") as fh:
            upload = client.post("/api/upload", files={"file": (sample.name, fh, "text/csv")})
    if upload.status_code != 200:
        raise SystemExit(f"upload failed: HTTP {upload.status_code} {upload.text[:500]}")
    uploaded = upload.json()
    info = uploaded["info"]
    print(f"2/5 uploaded file_id={uploaded['file_id']}: {info['totalRows']:,} rows, {len(uploaded['columns'])} "
          f"columns, CTR {info['ctr']}%, valid={uploaded['validation']['isValid']}")

    config = {"epochs": args.epochs, "batchSize": args.batch_size, "experimentName": "make_demo"}
    train = client.post("/api/train", json={"file_id": uploaded["file_id"], "config": config})
    if train.status_code != 200:
        raise SystemExit(f"training request failed: HTTP {train.status_code} {train.text[:500]}")
    run_id = train.json()["run_id"]
    print(f"3/5 training run_id={run_id} ({args.epochs} epochs)")
    ws_url = args.url.replace("http", "ws", 1) + f"/ws/training/{run_id}"
    metrics = asyncio.run(follow_training(ws_url, args.epochs))

    print("4/5 waiting for the explanation (LIME)...")
    features = wait_for(client, f"/api/report/feature-importance/{run_id}", "explanation", args.timeout).json()
    print("    top features (importance, p-value, 95% CI):")
    for f in features[:8]:
        print(f"    {f['feature']:<22} {f['description']:<18} {f['importance']:.3f}  p={f['pValue']:.2g}  "
              f"[{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]")

    print("5/5 waiting for the report...")
    report = wait_for(client, f"/api/report/ai/{run_id}", "report", args.timeout).json()
    perf = client.get(f"/api/performance/{run_id}").json()
    print(f"    written by: {report.get('model_used', '?')}")
    print(f"    summary: {report['summary'][:300]}")
    print("    key metrics (validation, original click rate):")
    for key in ("auc", "ap", "logloss", "calibration", "accuracy", "precision", "recall", "f1_score"):
        value = perf.get(key, metrics.get(key))
        if value is not None:
            print(f"    {key:<12} {value:.4f}")
    pdf = client.get(f"/api/report/pdf/{run_id}")
    if pdf.status_code != 200 or pdf.headers.get("content-type") != "application/pdf":
        raise SystemExit(f"PDF failed: HTTP {pdf.status_code} {pdf.text[:300]}")
    target = args.out / f"report-{run_id}.pdf"
    target.write_bytes(pdf.content)
    print(f"saved {target} ({len(pdf.content) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
