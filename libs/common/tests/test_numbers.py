"""finite(): only finite floats reach JSON."""

import math

from ctrops_common.numbers import finite


def test_finite_keeps_numbers_and_replaces_everything_else():
    assert finite(0.25) == 0.25 and finite("3") == 3.0 and finite(7) == 7.0
    for bad in (None, True, math.nan, math.inf, -math.inf, "abc", [1]):
        assert finite(bad) is None
        assert finite(bad, 0.0) == 0.0
