"""Helpers every forge adapter shares: bounded caches, SHA tests, text clipping and the one loop that
reads files at a revision through a per-process cache (contents at a commit SHA never change)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MENTION = re.compile(r"@(?=[A-Za-z0-9_])")


def is_sha(ref: str) -> bool:
    """Whether ``ref`` is a full commit SHA (whose contents never change)."""
    return bool(_SHA.fullmatch(ref))


class LruCache:
    """A thread-safe LRU mapping bounded by a total ``size`` (``weigh(value)`` per entry)."""

    def __init__(self, budget: int, weigh: Callable[[Any], int] = lambda _: 1):
        self.budget, self.weigh = budget, weigh
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if key in self._items:
                self._size -= self.weigh(self._items.pop(key))
            self._items[key] = value
            self._size += self.weigh(value)
            while self._size > self.budget and len(self._items) > 1:
                self._size -= self.weigh(self._items.popitem(last=False)[1])

    def pop(self, key: Any) -> None:
        with self._lock:
            if key in self._items:
                self._size -= self.weigh(self._items.pop(key))


def read_cached(cache: LruCache, ref: str, paths: list[str],
                read: Callable[[str, str], bytes | None]) -> dict[str, bytes | None]:
    """Contents of ``paths`` at ``ref`` (None where absent) through ``read(ref, path)``; at a SHA each
    file is fetched at most once per process."""
    immutable = is_sha(ref)
    result: dict[str, bytes | None] = {}
    for path in paths:
        key = (ref, path)
        if immutable and key in cache:
            result[path] = cache.get(key)
            continue
        result[path] = read(ref, path)
        if immutable:
            cache.put(key, result[path])
    return result


def changed_files_cached(cr: Any, head: str, cache: LruCache, list_files: Callable[[], list[str]],
                         refuse: Callable[[str], Exception], forge: str, noun: str, sign: str) -> list[str]:
    """The paths change request ``cr`` touches, listed once per (number, base, head) through
    ``list_files()``. ``head`` must be the request's head (SHA or branch) or, once merged, its merge
    commit; else ``refuse(message)`` is raised, as it is when the reader has no change request."""
    if cr is None:
        raise refuse(f"{forge}: this reader has no {noun}: it reads contents only")
    if head not in (cr.head_sha, cr.head_ref) and (cr.merge_sha is None or head != cr.merge_sha):
        raise refuse(f"{forge}: {noun} {sign}{cr.number} is at {cr.head_sha[:12]}, not {head[:12]}: "
                     f"read the {noun} again")
    key = (cr.number, cr.base_sha, cr.head_sha)
    cached = cache.get(key)
    if cached is None:
        cached = list_files()
        cache.put(key, cached)
    return list(cached)


def clip(text: str, limit: int, what: str = "text") -> str:
    """``text`` cut to ``limit`` characters, ending with a note saying so when it was cut."""
    if len(text) <= limit:
        return text
    note = f"\n\n… {what} truncated by modelherd: {len(text) - limit:,}+ characters omitted (GitHub's limit)."
    return text[:limit - len(note)] + note


def defuse_mentions(text: str) -> str:
    """``text`` with no ``@login`` that would notify anyone (a zero-width space after each ``@``)."""
    return _MENTION.sub("@\u200b", text)


def git_blob_sha(data: bytes) -> str:
    """The SHA git gives a blob holding ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
