"""Numbers safe to put in JSON: the contract forbids NaN and infinities."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any, default: float | None = None) -> float | None:
    """``value`` as a finite float; None, booleans, NaN, infinities and junk become ``default``."""
    if value is None or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
