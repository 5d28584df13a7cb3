"""The report's charts as PNG bytes (matplotlib, Agg, the report's Korean font).

Built with ``Figure`` and the Agg canvas directly, not pyplot: no global figure state,
no GUI backend, safe in a worker thread.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable
from typing import Any, ParamSpec

import matplotlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .facts import Feature
from .fonts import chart_font_family
from .report import gradient

DPI = 120  # sharp enough at A4 width; drawing time grows with the pixel count
P = ParamSpec("P")


_lock = threading.Lock()


def _korean(render: Callable[P, bytes]) -> Callable[P, bytes]:
    """Draw with the Korean font; rcParams are global, so one chart at a time."""

    @functools.wraps(render)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> bytes:
        family = chart_font_family()
        with _lock, matplotlib.rc_context({"font.family": family, "axes.unicode_minus": False}):
            return render(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float) -> Figure:
    # Fixed margins instead of a layout engine: constrained layout costs an extra draw per chart.
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


@_korean
def training_curves(curve: list[dict[str, Any]]) -> bytes:
    """Train/validation loss, and validation AUC and AP, per epoch."""
    epochs = [point["epoch"] for point in curve]
    figure = _figure(7.2, 3.0)
    loss_ax, rank_ax = figure.subplots(1, 2)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.22)
    for key, label, style in (("train_loss", "학습 손실", "-o"), ("val_loss", "검증 손실", "-s")):
        values = [point.get(key) for point in curve]
        if any(v is not None for v in values):
            loss_ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=label, markersize=3)
    loss_ax.set_title("손실")
    loss_ax.set_xlabel("에폭")
    loss_ax.legend(fontsize=8)
    loss_ax.grid(alpha=0.3)
    for key, label, color in (("auc", "검증 AUC", "#2563eb"), ("ap", "검증 AP", "#7c3aed")):
        values = [point.get(key) for point in curve]
        if any(v is not None for v in values):
            rank_ax.plot(epochs, [np.nan if v is None else v for v in values], "-o", color=color, label=label,
                         markersize=3)
    rank_ax.set_title("순위 지표")
    rank_ax.set_xlabel("에폭")
    rank_ax.legend(fontsize=8)
    rank_ax.grid(alpha=0.3)
    for ax in (loss_ax, rank_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(figure)


@_korean
def feature_importance(features: list[Feature]) -> bytes:
    """Horizontal bars, most important on top, with the 95% confidence interval as error bars."""
    shown = features[:12][::-1]
    colors = gradient(len(shown))[::-1]
    height = 0.45 * len(shown) + 1.2
    figure = _figure(7.2, height)
    ax = figure.subplots()
    figure.subplots_adjust(left=0.36, right=0.97, bottom=0.75 / height, top=1 - 0.4 / height)
    values = np.array([f.importance for f in shown])
    lower = np.clip(values - np.array([f.ci_low for f in shown]), 0, None)
    upper = np.clip(np.array([f.ci_high for f in shown]) - values, 0, None)
    labels = [f.name if f.description == f.name else f"{f.name} ({f.description})" for f in shown]
    ax.barh(range(len(shown)), values, xerr=[lower, upper], color=colors, capsize=3, ecolor="#374151")
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    for index, feature in enumerate(shown):
        marker = "*" if feature.p_value < 0.05 else ""
        ax.text(feature.ci_high, index, f"  {feature.importance:.3f}{marker}", va="center", fontsize=7)
    ax.set_xlabel("중요도 (0~1, 오차 막대: 95% 신뢰구간, *: p<0.05)")
    ax.set_title("변수 중요도")
    ax.set_xlim(0, max(1e-9, float(max((f.ci_high for f in shown), default=1.0))) * 1.25)
    ax.grid(axis="x", alpha=0.3)
    return _png(figure)
