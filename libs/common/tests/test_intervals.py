"""The shared Wilson interval and normal quantile against textbook values."""

from __future__ import annotations

import pytest

from ctrops_common.intervals import Z95, wilson_interval, z_value


def test_the_normal_quantile_of_the_usual_levels():
    assert Z95 == pytest.approx(1.959964, abs=1e-6)
    assert z_value(0.90) == pytest.approx(1.644854, abs=1e-6) and z_value(0.99) == pytest.approx(2.575829, abs=1e-6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        z_value(1.0)


def test_wilson_against_hand_computed_values():
    # 200 successes of 2,500 (8%): Wilson 6.999% .. 9.129%; 5 of 100: the textbook 2.154% .. 11.175%.
    assert wilson_interval(200, 2500) == (pytest.approx(0.06999, abs=1e-5), pytest.approx(0.09129, abs=1e-5))
    assert wilson_interval(5, 100) == (pytest.approx(0.02154, abs=1e-5), pytest.approx(0.11175, abs=1e-5))


def test_wilson_brackets_the_rate_narrows_with_rows_and_stays_in_bounds():
    low, high = wilson_interval(5, 100)
    assert low < 0.05 < high
    wide, narrow = wilson_interval(9, 20), wilson_interval(900, 2000)
    assert wide[1] - wide[0] > 5 * (narrow[1] - narrow[0])
    none_of_50, all_of_50 = wilson_interval(0, 50), wilson_interval(50, 50)
    assert none_of_50[0] == 0.0 and none_of_50[1] == pytest.approx(0.0713, abs=1e-4)  # not 0 .. 0
    assert all_of_50[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(120, 100) == wilson_interval(100, 100)  # more successes than trials: clipped
