"""Drop-fraction schedules: RigL cosine to 0 at drop_end, REST cosine to 0.005, constant."""

from __future__ import annotations

import math

import pytest

from trainables.errors import UserError
from trainables.sparse import DropSchedule


def test_rigl_values_and_stop():
    schedule = DropSchedule("rigl", 0.3, total_steps=1000, end_fraction=0.75)
    assert schedule(0) == pytest.approx(0.3)
    assert schedule(375) == pytest.approx(0.15)  # half way to T_end = 750
    assert schedule(250) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))
    assert schedule(749) > 0
    assert schedule(750) == 0.0 and schedule(999) == 0.0 and schedule(5000) == 0.0


def test_rest_values_never_stop():
    schedule = DropSchedule("rest", 0.5, total_steps=17_700)
    assert schedule(0) == pytest.approx(0.5)
    assert schedule(8_850) == pytest.approx(0.005 + 0.495 / 2)
    assert schedule(17_000) == pytest.approx(
        0.005 + 0.495 * (1 + math.cos(math.pi * 17_000 / 17_700)) / 2
    )
    assert schedule(17_700) == pytest.approx(0.005)
    assert schedule(20_000) == pytest.approx(0.005)  # past the end: stays at the minimum


def test_constant():
    schedule = DropSchedule("constant", 0.3, total_steps=100)
    assert {schedule(t) for t in (0, 50, 99, 1000)} == {0.3}


def test_bad_kind_names_allowed():
    with pytest.raises(UserError, match="drop_schedule: 'linear'.*rigl, rest, constant"):
        DropSchedule("linear", 0.3, 100)
    with pytest.raises(UserError, match="drop_fraction"):
        DropSchedule("rigl", 1.5, 100)
