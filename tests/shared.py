"""Access to the read-only material in ``<repo>/../shared/`` (API descriptions, payloads, notes).

Tests read it in place. Where it is absent (someone's own clone), the test that needs it is
skipped with the reason, and the rest of the suite still runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ROOT = REPO_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Return ``<repo>/../shared/<parts…>``; skip the calling test when it does not exist."""
    path = SHARED_ROOT.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared material absent: {path}")
    return path
