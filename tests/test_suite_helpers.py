"""The suite's own helper for records that two processes or two batchings compute:
assert_records_close, floats to float32 precision, everything else exactly."""

import numpy as np
import pytest
from conftest import assert_records_close


def record(score=1333.217651, **changes):
    base = {"input": "a.png", "seconds": 0.12, "predictions": [{"class": 2, "label": "cross", "probability": 0.75}],
            "maps": [{"class": 2, "score": score, "stats": {"empty": False, "raw_max": 3.5e-05}}], "grid": [8, 8]}
    base.update(changes)
    return base


def test_a_float32_last_digit_and_a_timing_are_no_difference():
    # the Ray worker's score against the local run's (issue 31), another run's time
    assert_records_close(record(1333.217773, seconds=9.5), record(1333.217651))
    assert_records_close(record(np.float32(1333.217773)), record())  # numpy scalars are numbers too
    assert_records_close({"auc": 0.9530416348}, {"auc": 0.9530416361})
    assert_records_close({"value": 1e-7}, {"value": 0.0})  # near zero: the absolute tolerance


@pytest.mark.parametrize("changed, message", [
    (record(1333.3), "record['maps'][0]['score']: 1333.3 != 1333.217651 (rel=1e-05, abs=1e-06)"),
    (record(grid=[8, 7]), "record['grid'][1]: 7 != 8"),
    (record(grid=[8, 8, 1]), "record['grid']: 3 items against 2"),
    (record(input="b.png"), "record['input']: 'b.png' != 'a.png'"),
    (record(extra=1), "record: keys ['extra'] only in the first, [] only in the second"),
    (record(maps=[{"class": 2, "score": 1333.217651, "stats": {"empty": 0, "raw_max": 3.5e-05}}]),
     "record['maps'][0]['stats']['empty']: 0 (int) != False (bool)"),
    (record(maps=[{"class": 2, "score": 1333.217651, "stats": {"empty": False, "raw_max": 3.7e-05}}]),
     "record['maps'][0]['stats']['raw_max']: 3.7e-05 != 3.5e-05 (rel=1e-05, abs=1e-06)"),
    (record(grid=None), "record['grid']: None (NoneType) != [8, 8] (list)"),
])
def test_any_other_difference_fails_and_is_named_at_its_place(changed, message):
    with pytest.raises(AssertionError) as caught:
        assert_records_close(changed, record())
    assert message in str(caught.value)


def test_integers_are_exact_and_tolerances_can_be_stated():
    with pytest.raises(AssertionError, match=r"record\['count'\]: 1000001 != 1000000"):
        assert_records_close({"count": 1000001}, {"count": 1000000})
    assert_records_close({"x": 1.001}, {"x": 1.0}, rel=1e-2)
    with pytest.raises(AssertionError, match="inf != 1e"):
        assert_records_close({"x": float("inf")}, {"x": 1e300})
