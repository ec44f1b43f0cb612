"""app/log_throttle.py: one log line per interval for an error every request repeats."""

from __future__ import annotations

import time

from app.log_throttle import EveryInterval


def test_due_once_then_not_until_the_interval_has_passed():
    throttle = EveryInterval(0.05)
    assert throttle.due() is True
    assert [throttle.due() for _ in range(100)] == [False] * 100
    time.sleep(0.06)
    assert throttle.due() is True
    assert throttle.due() is False
