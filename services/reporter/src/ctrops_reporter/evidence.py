"""How much the data supports a claim: the model's strength verdict, intervals, multiple testing.

A report may only say what the validation data shows, so every claim is gated here.

**Model strength** (one verdict for the champion, from its validation AUC's 95% interval and
its average precision against the base rate; ``AP lift = AP / click rate of the validation
rows``, the rate a random ranking scores):

| verdict | Korean | rule |
|---|---|---|
| weak | 약함 | AUC interval's lower bound <= 0.55, or AP lift < 1.5, or no interval/AP at all |
| strong | 강함 | lower bound >= 0.70 and AP lift >= 3 |
| usable | 사용 가능 | otherwise |

Why these numbers. An AUC of 0.5 is a coin flip; Hosmer & Lemeshow (Applied Logistic
Regression, 3rd ed., 5.2.4) call 0.5-0.7 poor and >= 0.7 acceptable discrimination. A lower
bound at or below 0.55 means the data cannot rule out a ranking that is practically
random, so nothing may be built on it; a lower bound of 0.70 means acceptable discrimination
is established with 95% confidence. AP is the precision averaged over the ranking, so
AP lift says how many times the base rate the top of the ranking clicks: under 1.5x the
targeted audience barely differs from everyone (a 20% pilot would move CTR by < 10%,
within week-to-week noise of a campaign), 3x and more is a gain a pilot can measure.
Using the interval's *lower* bound, not the point AUC, is what makes a model trained on
nine validation clicks weak whatever its point estimate. A run whose interval cannot be
known (no AUC, or no click counts) is weak: no claim without evidence.

**Intervals.** The trainer sends the DeLong 95% interval of each model's validation AUC
(``ModelResult.auc_ci_low/high``). Older runs lack it; then the Hanley & McNeil (1982)
standard error from the AUC and the numbers of clicks and non-clicks gives it. The
precision among the impressions the model targets (the CTR of the targeted audience) gets
a Wilson score interval from the validation counts behind it; money ranges follow from it.

**Multiple testing.** The segment tables run one test per segment (24 hours, 7 weekdays,
placements, age x gender): at p < 0.05 about one in twenty null segments "wins". The
Benjamini-Hochberg step-up adjustment across every segment test of the report controls the
false discovery rate at 5%; only an adjusted p < 0.05 counts as a finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# Adjusted p below SIGNIFICANCE counts as a finding: one bar for the report and the dashboard that reads it.
from ctrops_common.intervals import z_value
from ctrops_common.report_doc import SIGNIFICANCE  # noqa: F401 - re-exported to facts and narrative

Verdict = Literal["strong", "usable", "weak"]

WEAK_AUC_LOW = 0.55  # the AUC interval's lower bound at or below this: weak
STRONG_AUC_LOW = 0.70  # lower bound at or above this (and AP lift below): strong
WEAK_AP_LIFT = 1.5  # AP / base rate below this: weak
STRONG_AP_LIFT = 3.0  # AP / base rate at or above this (and AUC above): strong

VERDICT_KO: dict[str, str] = {"strong": "강함", "usable": "사용 가능", "weak": "약함"}


def hanley_mcneil_interval(auc: float, clicks: int, non_clicks: int, level: float = 0.95) -> tuple[float, float] | None:
    """AUC interval from the Hanley & McNeil (1982) standard error; None without both classes."""
    if clicks < 1 or non_clicks < 1 or not 0.0 <= auc <= 1.0:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (clicks - 1) * (q1 - auc * auc) + (non_clicks - 1) * (q2 - auc * auc)) / (
        clicks * non_clicks)
    half = z_value(level) * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def benjamini_hochberg(p_values: list[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1), in the input order.

    ``None`` (no test) stays None and does not count in the number of tests.
    """
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 1.0
    for rank, (p, i) in reversed(list(enumerate(sorted(indexed), start=1))):
        running = min(running, p * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class StrengthInputs:
    auc: float | None
    auc_low: float | None
    ap: float | None
    base_rate: float | None  # click rate of the rows AP was measured on


def strength_verdict(inputs: StrengthInputs) -> tuple[Verdict, list[str]]:
    """(verdict, reasons in Korean) from the rule in the module docstring."""
    reasons: list[str] = []
    if inputs.auc is None or inputs.auc_low is None:
        reasons.append("AUC의 95% 신뢰구간을 알 수 없어 변별력을 확인할 수 없습니다")
    elif inputs.auc_low <= WEAK_AUC_LOW:
        reasons.append(f"AUC 95% 신뢰구간의 하한 {inputs.auc_low:.3f}이 {WEAK_AUC_LOW:.2f} 이하라 "
                       "무작위 순위와 구분된다고 말할 수 없습니다")
    lift = ap_lift(inputs.ap, inputs.base_rate)
    if lift is None:
        reasons.append("AP 또는 기준 클릭률이 없어 상위 순위의 클릭 집중도를 확인할 수 없습니다")
    elif lift < WEAK_AP_LIFT:
        reasons.append(f"AP가 기준 클릭률의 {lift:.2f}배로 {WEAK_AP_LIFT:g}배에 못 미칩니다")
    if reasons:
        return "weak", reasons
    assert inputs.auc_low is not None and lift is not None
    if inputs.auc_low >= STRONG_AUC_LOW and lift >= STRONG_AP_LIFT:
        return "strong", [f"AUC 하한 {inputs.auc_low:.3f} ≥ {STRONG_AUC_LOW:.2f}, "
                          f"AP가 기준 클릭률의 {lift:.1f}배 ≥ {STRONG_AP_LIFT:g}배"]
    return "usable", [f"AUC 하한 {inputs.auc_low:.3f} > {WEAK_AUC_LOW:.2f}, AP가 기준 클릭률의 {lift:.1f}배 "
                      f"(강함 기준: 하한 ≥ {STRONG_AUC_LOW:.2f}, {STRONG_AP_LIFT:g}배 이상)"]


def ap_lift(ap: float | None, base_rate: float | None) -> float | None:
    if ap is None or base_rate is None or base_rate <= 0:
        return None
    return ap / base_rate
