"""``--clock-shift``: run the whole suite with the real clock moved ahead (``3650d``, ``10y``, ``36h``).

Loaded with ``-p tests.timeshift`` (``addopts`` in ``pyproject.toml``) so that it moves the clock before
any conftest or test module is imported: every in-process reader of the real clock — modelherd's clock
provider, the libraries it uses, the fake forges, clusters and Slack, and ``tests.clock.FIXED`` — sees the
same shifted time, which keeps ticking (``time-machine`` with ``tick=True``).  Monotonic clocks are not
moved.  Processes the suite starts by ``exec`` (the MLflow server, a served ``modelherd``) keep the real
time, as separate machines would.  ``MODELHERD_TEST_CLOCK_SHIFT`` sets the default (for CI).

A suite that passes shifted years ahead has no date bomb: no test depends on today's date.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest

_SHIFT = pytest.StashKey[object]()
_UNITS = {"d": 1.0, "w": 7.0, "y": 365.0, "h": 1 / 24}


def parse_shift(text: str) -> timedelta:
    """``"10y"`` → 3650 days; ``"36h"``, ``"2w"``, ``"400d"``, a plain number of days, or ``"0"``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwyh]?)\s*", text or "0")
    if match is None:
        raise pytest.UsageError(f"--clock-shift {text!r}: expected a number with d, w, y or h, e.g. 10y")
    return timedelta(days=float(match.group(1)) * _UNITS[match.group(2) or "d"])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--clock-shift", default=os.environ.get("MODELHERD_TEST_CLOCK_SHIFT", "0"),
                     help="run the suite with the real clock moved this far ahead, e.g. 10y or 400d "
                          "(default: $MODELHERD_TEST_CLOCK_SHIFT or 0)")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    shift = parse_shift(early_config.known_args_namespace.clock_shift)
    if not shift:
        return
    import time_machine
    from modelherd.clock import utcnow

    traveller = time_machine.travel(utcnow() + shift, tick=True)
    traveller.start()
    early_config.stash[_SHIFT] = (traveller, shift)


def pytest_report_header(config: pytest.Config) -> str | None:
    moved = config.stash.get(_SHIFT, None)
    if moved is None:
        return None
    from modelherd.clock import rfc3339, utcnow

    return f"clock: shifted {moved[1].days} days ahead, now {rfc3339(utcnow())}"


def pytest_unconfigure(config: pytest.Config) -> None:
    moved = config.stash.get(_SHIFT, None)
    if moved is not None:
        moved[0].stop()
