"""Benchmarks of the GitHub App, run by ``make bench`` after ``python -m modelherd.bench``.

``python -m bench`` (from the repository root) prints JSON lines like :mod:`modelherd.bench`: each
line a ``figure`` with its ``value``, the ``baseline`` it is measured against in the same run, the
``baseline_value`` and the ``ratio`` (value / baseline_value), plus context fields.

* :mod:`bench.intake` — webhook intake (`modelherd serve`'s server, 2 workers) against a bare Flask handler;
* :mod:`bench.github_calls` — GitHub API reads/writes per PR event, and the time from webhook to the
  plan comment with latency added to each fake GitHub call.

The benchmarks use the test suite's fake GitHub and harness (``tests/``), so run them from the
repository root with the test extras installed (``make bench`` does both).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

if str(REPO_ROOT) not in sys.path:  # ``tests`` is imported as a package from the repository root
    sys.path.insert(0, str(REPO_ROOT))


def emit(**figure) -> dict:
    """Print one figure as a JSON line (and return it, for callers and tests)."""
    print(json.dumps(figure), flush=True)
    return figure


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by nearest rank; ``None`` without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None
