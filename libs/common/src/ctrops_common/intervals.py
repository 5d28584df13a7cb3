"""The interval of a proportion, one definition for every room that states one.

Ingest's dashboard segments (a segment's click rate), the reporter's evidence (a segment's rate,
the share of flagged rows) and the monitor's AUC floor all speak of 95% intervals; they take the
normal quantile and the Wilson score interval from here. Standard library only (``NormalDist``).
"""

from __future__ import annotations

import math
from statistics import NormalDist


def z_value(level: float = 0.95) -> float:
    """The two-sided normal quantile of a confidence level: 1.959964 for 0.95."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"a confidence level is between 0 and 1, not {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


Z95 = z_value(0.95)


def wilson_interval(successes: float, trials: float, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (Wilson 1927), clipped to [0, 1]; None without trials.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is honest for small groups and
    rates near 0, as click rates are: 0 clicks of 50 rows is 0 .. 7.1%, not 0 .. 0."""
    if trials <= 0:
        return None
    successes = min(max(successes, 0.0), trials)
    z = z_value(level)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
