"""The contract material vendored in this folder: official API descriptions and real webhook payloads.

See ``README.md`` here for what is where, its source and license. The material is part of the
repository, so a missing file is a broken checkout: it raises, naming the file, instead of skipping.
"""

from __future__ import annotations

import gzip
from pathlib import Path

CONTRACTS_ROOT = Path(__file__).resolve().parent


class MissingContract(FileNotFoundError):
    """A file that should be in ``tests/contracts/`` is not there."""


def contract_path(*parts: str) -> Path:
    """``tests/contracts/<parts…>``; :class:`MissingContract` when it does not exist."""
    path = CONTRACTS_ROOT.joinpath(*parts)
    if not path.exists():
        raise MissingContract(f"contract material missing: {path} (see tests/contracts/README.md)")
    return path


def contract_text(*parts: str) -> str:
    """The UTF-8 text of ``tests/contracts/<parts…>``, decompressed when the name ends in ``.gz``."""
    path = contract_path(*parts)
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8")
