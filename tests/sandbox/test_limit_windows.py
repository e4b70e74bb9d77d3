"""The sliding-window pieces the emulators' service protection and F&O throttling share (sandbox.common.limits)."""

from __future__ import annotations

from collections import deque

import pytest

from sandbox.common.limits import age_out, check_positive, retry_after


def test_age_out_drops_what_left_the_window_oldest_first() -> None:
    stamps = deque([1.0, 2.0, 3.0])
    age_out(stamps, 2.0)
    assert list(stamps) == [3.0]
    durations = deque([(1.0, 50.0), (5.0, 10.0)])
    age_out(durations, 4.0, moment=lambda entry: entry[0])
    assert list(durations) == [(5.0, 10.0)]


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after(10.0, 400.0, 300.0) == 1  # already out of the window
    assert retry_after(100.0, 100.5, 300.0) == 300


def test_check_positive_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"unknown throttling setting\(s\): bogus"):
        check_positive({"bogus": 1}, {"requests"}, "throttling setting")
    with pytest.raises(ValueError, match="throttling setting 'requests' must be a positive integer, got 0"):
        check_positive({"requests": 0}, {"requests"}, "throttling setting")
    check_positive({"requests": 5}, {"requests"}, "throttling setting")
