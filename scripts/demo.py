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
import unicodedata
from pathlib import Path
from typing import Any

import httpx
import websockets
from tqdm import tqdm

from ctrops_common.datagen import generate
from ctrops_common.report_doc import ReportDoc

# What the frontend does when its socket drops: 5 reconnects, 3 s apart.
RECONNECTS, RECONNECT_DELAY_S = 5, 3.0


def pad(text: str, width: int) -> str:
    """Left-justify counting Korean (wide) characters as two columns, so tables line up."""
    shown = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - shown)


def num(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def won_range(pair: tuple[float, float]) -> str:
    return f"{pair[0]:+,.0f}원 ~ {pair[1]:+,.0f}원"


def money_summary(report: dict[str, Any]) -> list[str]:
    """The run report's verdict, money and top segment, as the report states them (never recomputed).

    The same figures as the PDF and the marketer dashboard (/api/dashboard/client): all three
    read them from the run's report.json. A weak model gets no money line at all.
    """
    doc = ReportDoc.model_validate(report)
    s = doc.model_strength
    auc = "n/a" if s.auc is None else f"{s.auc:.3f}"
    ci = f" (95% CI {s.auc_ci[0]:.3f}~{s.auc_ci[1]:.3f}, {s.auc_ci_method})" if s.auc_ci else ""
    ap = "" if s.ap is None else f", AP {s.ap:.3f}" + ("" if s.ap_lift is None else f" ({s.ap_lift:.1f}x the click rate)")
    lines = [f"model strength: {s.verdict_ko} ({s.verdict}) - AUC {auc}{ci}{ap}"]
    a = doc.assumptions
    if doc.has_money and doc.money_range is not None:
        m = doc.money_range
        lines += [
            f"monthly revenue change (95% range, estimate): {won_range(m.additional_revenue_krw)} "
            f"(point {doc.additional_revenue:+,.0f}원)",
            f"ROI change: {m.roi_change_points[0]:+.2f}%p ~ {m.roi_change_points[1]:+.2f}%p "
            f"(point {doc.roi_increase:+.2f}%p) at the same monthly spend {a.monthly_spend_krw or 0:,.0f}원",
            f"assumptions: {a.monthly_impressions:,} impressions/month, CPM {a.cpm_krw:,.0f}원, "
            f"conversion {100 * a.conversion_rate:.1f}% x {a.conversion_value_krw:,.0f}원",
        ]
    else:
        lines.append(f"money: no estimate - {a.reason or 'the report gives none'}")
    top = doc.top_segment()
    if top is None:
        lines.append("top segment: none holds after the Benjamini-Hochberg correction")
    else:
        finding, seg = top
        lines.append(f"top segment: {seg.label} ({finding.title}) CTR {seg.ctr:.2f}% "
                     f"(95% {seg.ctr_low:.2f}~{seg.ctr_high:.2f}%, average {finding.base_ctr:.2f}%), "
                     f"BH-adjusted p {seg.p_adjusted:.2g}")
    return lines


def wait_for(client: httpx.Client, path: str, what: str, timeout_s: float) -> httpx.Response:
    """Poll ``path`` until it answers 200; 404/409 mean 'not yet' (Retry-After), anything else is an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(path)
        if response.status_code == 200:
            return response
        if response.status_code not in (404, 409, 425, 503) or time.monotonic() > deadline:
            raise SystemExit(f"\n{what} failed: HTTP {response.status_code} {response.text[:500]}")
        time.sleep(min(float(response.headers.get("retry-after", 1)), 2.0))


class Progress:
    """The epochs as a tqdm bar; other messages are printed above it.

    In a terminal tqdm redraws the bar in place (with elapsed time and its estimate of the time
    left); piped to a file, each update is one line (tqdm's same meter, printed as a line).
    """

    FORMAT = "  {bar:30} {n_fmt}/{total_fmt} epochs [{elapsed}<{remaining}]{postfix}"

    def __init__(self, total: int) -> None:
        self.tty = sys.stdout.isatty()
        self.bar = tqdm(total=total, file=sys.stdout, bar_format=self.FORMAT, dynamic_ncols=True,
                        disable=not self.tty, mininterval=0)
        self.done, self.total, self.postfix = 0, total, ""
        self.started = time.monotonic()

    def epoch(self, message: dict[str, Any]) -> None:
        done = max(self.done, int(message["epoch"]))
        self.total = int(message.get("total_epochs", self.total))
        m = message["metrics"]
        self.postfix = (f"val loss {num(m.get('val_loss'), '.4f')}  val AUC {num(m.get('auc'), '.3f')}  "
                        f"AP {num(m.get('ap'), '.3f')}")
        if self.tty:
            if self.bar.total != self.total:
                self.bar.total = self.total
            self.bar.set_postfix_str(self.postfix, refresh=False)
            self.bar.update(done - self.done)
        else:
            print(tqdm.format_meter(done, self.total, time.monotonic() - self.started, bar_format=self.FORMAT,
                                    postfix=self.postfix), flush=True)
        self.done = done

    def say(self, text: str) -> None:
        if self.tty:
            self.bar.write(f"  {text}", file=sys.stdout)
        else:
            print(f"  {text}", flush=True)

    def close(self) -> None:
        self.bar.close()


async def follow_training(ws_url: str, epochs: int) -> dict[str, Any]:
    """Live progress from /ws/training/{run_id} until the run ends; reconnects like the frontend."""
    progress = Progress(epochs)
    try:
        return await _follow(ws_url, progress)
    finally:
        progress.close()


async def _follow(ws_url: str, progress: Progress) -> dict[str, Any]:
    tries = 0
    while True:
        try:
            async with websockets.connect(ws_url, open_timeout=10) as socket:
                tries = 0
                while True:
                    message = json.loads(await asyncio.wait_for(socket.recv(), timeout=1800))
                    kind = message.get("type")
                    if kind == "epoch_update":
                        progress.epoch(message)
                    elif kind == "log" and not message["message"].startswith("에폭"):  # epochs are on the bar
                        progress.say(message["message"])
                    elif kind == "training_complete":
                        return message.get("metrics", {})
                    elif kind == "training_failed":
                        raise SystemExit(f"\ntraining failed: {message.get('error')}")
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake, asyncio.TimeoutError) as exc:
            tries += 1
            if tries > RECONNECTS:
                raise SystemExit(f"\nlost the training stream ({exc!r}); is `make run` still running?") from None
            progress.say(f"(connection lost: {type(exc).__name__}; reconnecting {tries}/{RECONNECTS})")
            await asyncio.sleep(RECONNECT_DELAY_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://localhost:8000", help="the gateway (make run prints it)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the generated sample")
    # 20,000 rows hold about 400 clicks; down-sampled (the default) that is ~1,000 training rows,
    # so small batches give the model enough steps to find the planted signal in about a minute.
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the PDF")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each stage")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    client = httpx.Client(base_url=args.url, timeout=args.timeout)
    started = time.monotonic()
    try:
        health = client.get("/api/health").json()
    except httpx.HTTPError as exc:
        raise SystemExit(f"no gateway at {args.url} ({exc}); start the platform with `make run` first") from None
    up = [name for name, s in health["services"].items() if s["status"] == "up"]
    print(f"platform {args.url}: {health['status']} ({len(up)}/{len(health['services'])} services up: {', '.join(up)})")
    if health["status"] != "healthy":
        print("  some services are down; the demo waits for them (see the `make run` window)")

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "demo_ctr.csv"
        truth = generate(sample, args.rows, seed=42)
        print(f"1/5 generated {sample.name}: {truth['rows']:,} rows x 119 columns, {truth['clicks']:,} clicks "
              f"(CTR {truth['ctr_percent']:.2f}%, {sample.stat().st_size / 1e6:.1f} MB)")
        with open(sample, "rb") as fh:
            upload = client.post("/api/upload", files={"file": (sample.name, fh, "text/csv")})
    if upload.status_code != 200:
        raise SystemExit(f"upload failed: HTTP {upload.status_code} {upload.text[:500]}")
    uploaded = upload.json()
    info = uploaded["info"]
    print(f"2/5 uploaded: file_id {uploaded['file_id']}, {info['totalRows']:,} rows, {len(uploaded['columns'])} "
          f"columns, CTR {info['ctr']}%, valid: {uploaded['validation']['isValid']}")
    for warning in uploaded["validation"]["warnings"][:3]:
        print(f"    warning: {warning}")

    config = {"epochs": args.epochs, "batchSize": args.batch_size, "experimentName": "make_demo"}
    train = client.post("/api/train", json={"file_id": uploaded["file_id"], "config": config})
    if train.status_code != 200:
        raise SystemExit(f"training request failed: HTTP {train.status_code} {train.text[:500]}")
    run_id = train.json()["run_id"]
    print(f"3/5 training run {run_id}: {args.epochs} epochs, batch {args.batch_size} (live from /ws/training)")
    ws_url = args.url.replace("http", "ws", 1) + f"/ws/training/{run_id}"
    asyncio.run(follow_training(ws_url, args.epochs))

    print("4/5 explaining the champion (TreeSHAP or LIME, held-out permutation test)...")
    features = wait_for(client, f"/api/report/feature-importance/{run_id}", "explanation", args.timeout).json()
    planted = set(truth["planted_tabular"]) | {"seq"}
    print(f"    {pad('feature', 18)} {pad('설명', 22)} importance  p-value   95% CI")
    for f in features[:8]:
        p_value = "<1e-15" if f["pValue"] < 1e-15 else format(f["pValue"], ".2g")  # below double precision
        mark = "  <- planted by the generator" if f["feature"] in planted else ""
        print(f"    {pad(f['feature'], 18)} {pad(f['description'], 22)} {f['importance']:10.3f}  "
              f"{p_value:<8}  [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]{mark}")

    print("5/5 writing the report...")
    report = wait_for(client, f"/api/report/ai/{run_id}", "report", args.timeout).json()
    perf = wait_for(client, f"/api/performance/{run_id}", "performance", 60).json()
    print(f"    written by: {report.get('model_used', '?')}")
    print(f"    summary: {report['summary'][:400]}")
    for line in money_summary(report):  # the same figures as the PDF and /api/dashboard/client
        print(f"    {line}")
    print("    key metrics (validation rows, original click rate; judge by AUC and AP at ~2% clicks):")
    for key in ("auc", "ap", "logloss", "calibration", "accuracy", "precision", "recall", "f1_score"):
        if perf.get(key) is not None:
            print(f"    {key:<12} {perf[key]:.4f}")
    pdf = client.get(f"/api/report/pdf/{run_id}")
    if pdf.status_code != 200 or pdf.headers.get("content-type") != "application/pdf":
        raise SystemExit(f"PDF failed: HTTP {pdf.status_code} {pdf.text[:300]}")
    target = args.out / f"report-{run_id}.pdf"
    target.write_bytes(pdf.content)
    print(f"saved {target} ({len(pdf.content) / 1024:.0f} KB) - {time.monotonic() - started:.0f}s in all")
    print(f"more: {args.url}/docs (API), {args.url}/api/dashboard/si, {args.url}/api/dashboard/client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
