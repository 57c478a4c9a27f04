"""Rendered objects as readable YAML, and a unified diff between two renders.

Output is canonical so that equal objects always give equal text: documents are sorted by kind,
namespace and name; each document starts with ``apiVersion``, ``kind``, ``metadata``, ``spec`` and
every other mapping is sorted by key (as ``kubectl get -o yaml`` does). Block style throughout, no
YAML anchors, no line wrapping (a long URI stays on one line), multi-line strings as ``|`` blocks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec")


class _Dumper(yaml.SafeDumper):
    """Safe dumper that never emits anchors/aliases for shared sub-objects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """Multi-line strings as literal blocks; everything else as PyYAML decides (it quotes
    ambiguous scalars such as ``"true"`` or ``"1"``)."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def _canonical(value: Any) -> Any:
    """A copy of ``value`` with mappings sorted by key and tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _document(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One object in canonical order, Kubernetes' leading keys first."""
    body = _canonical(obj)
    head = {k: body.pop(k) for k in _TOP_KEYS if k in body}
    return {**head, **body}


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """Documents are ordered by kind, apiVersion, namespace, name."""
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(obj.get("apiVersion", "")),
            str(meta.get("namespace", "")), str(meta.get("name", "")))


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """``objects`` as one multi-document YAML string (``---`` before each); empty for no objects."""
    docs = [_document(o) for o in sorted(objects, key=_sort_key)]
    if not docs:
        return ""
    return yaml.dump_all(docs, Dumper=_Dumper, explicit_start=True, default_flow_style=False,
                         sort_keys=False, allow_unicode=True, width=1_000_000)


def diff(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]], *,
         before_name: str = "before", after_name: str = "after", context: int = 3) -> str:
    """A unified diff of the two renders' YAML, ``""`` when they are equal."""
    old, new = to_yaml(before), to_yaml(after)
    if old == new:
        return ""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=before_name, tofile=after_name, n=context)
    return "".join(lines)
