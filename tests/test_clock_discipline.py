"""Time is given, never read: no product module but ``modelherd.clock`` touches the wall clock.

A flow that stamps the wall clock where it was given a clock works only while the two agree — the suite
once went red on a date because a decommission stamped the real time into a rollout driven by a test
clock.  This test reads every product module (``bot/``, ``checks/``) and fails on any reference to a
clock, a sleep or the database server's clock outside ``bot/clock.py``; and Rego policies read ``now``
from their input, never ``time.now_ns()``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "checks").rglob("*.py")])
PROVIDER = ROOT / "bot" / "clock.py"

#: module → attributes that read (or wait on) the real clock.
FORBIDDEN = {
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep",
             "localtime", "gmtime", "ctime", "asctime", "strftime", "process_time", "thread_time"},
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "func": {"now", "current_timestamp", "localtimestamp", "current_date", "sysdate"},   # SQLAlchemy
}


def _dotted(node: ast.AST) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def clock_reads(source: str, filename: str = "<source>") -> list[str]:
    """``line:col name`` for each wall-clock reference in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute):
            chain = _dotted(node)
            if len(chain) >= 2 and chain[-1] in FORBIDDEN.get(chain[-2], ()):
                found.append(f"{node.lineno}:{node.col_offset} {'.'.join(chain)}")
        elif isinstance(node, ast.ImportFrom) and node.module in FORBIDDEN:
            found += [f"{node.lineno}:{node.col_offset} from {node.module} import {alias.name}"
                      for alias in node.names if alias.name in FORBIDDEN[node.module]]
    return found


def test_the_guard_sees_every_form_of_a_clock_read():
    source = ("import time, datetime as dt\nfrom time import monotonic\nfrom datetime import date, datetime\n"
              "a = datetime.now(UTC)\nb = time.time()\nc = date.today()\nd = dt.datetime.utcnow()\n"
              "def f(sleep=time.sleep): pass\nx = sa.func.now()\n")
    assert [hit.split(" ", 1)[1] for hit in clock_reads(source)] == [
        "from time import monotonic", "datetime.now", "time.time", "date.today", "dt.datetime.utcnow",
        "time.sleep", "sa.func.now"]


@pytest.mark.parametrize("path", [p for p in PRODUCT if p != PROVIDER], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_module_reads_the_wall_clock(path: Path):
    hits = clock_reads(path.read_text(encoding="utf-8"), str(path))
    assert not hits, (f"{path.relative_to(ROOT)} reads the wall clock at {', '.join(hits)}: take the clock "
                      "you are given (or modelherd.clock's utcnow/epoch/monotonic/sleep as a default)")


def test_policies_read_now_from_their_input():
    rego = sorted((ROOT / "policies").rglob("*.rego"))
    assert rego
    offenders = [str(p.relative_to(ROOT)) for p in rego if "time.now_ns" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_clock_shift_moves_the_whole_run_and_fixed_with_it(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--clock-shift 10y``: the provider, the standard library and ``FIXED`` move together; the file
    system's clock (the kernel's) does not, which is how the probe measures the shift."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_probe="""
        import os, time
        from datetime import UTC, datetime, timedelta
        from modelherd.clock import utcnow
        from tests.clock import BEHIND_REAL_TIME, FIXED

        def test_moved(tmp_path):
            (tmp_path / "f").write_text("x")
            real = datetime.fromtimestamp(os.stat(tmp_path / "f").st_mtime, UTC)
            ahead = (utcnow() - real).days
            assert 3649 <= ahead <= 3650, ahead
            assert abs((datetime.fromtimestamp(time.time(), UTC) - utcnow()).total_seconds()) < 60
            assert timedelta(0) <= utcnow() - FIXED - BEHIND_REAL_TIME < timedelta(hours=1)
    """)
    result = pytester.runpytest_subprocess("-p", "tests.timeshift", "--clock-shift=10y", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["clock: shifted 3650 days ahead, now *"])
