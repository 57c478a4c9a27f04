"""Many files of one commit out of the forge's archive of it: one ``.tar.gz`` download instead of one
contents request per file.

Forge-neutral: an adapter hands :func:`extract` the archive's bytes as an iterator of chunks (a
streamed HTTP body) and the paths it wants; nothing touches the disk. The archive is the forge's
``git archive`` of the commit: every member below one top folder (GitHub: ``owner-repo-<sha7>/``,
GitLab: ``project-<sha>/``), which is dropped to give repository paths.

What a hostile or simply huge archive cannot do here:

* make us download more than :attr:`ArchiveLimits.max_bytes` compressed bytes, or for longer than
  :attr:`ArchiveLimits.seconds` (:class:`ArchiveTooBig` / :class:`ArchiveRefused`: the caller reads
  file by file instead);
* make us decompress more than :attr:`ArchiveLimits.max_unpacked` bytes (a gzip bomb);
* hand us a file bigger than :attr:`ArchiveLimits.max_member` (it is left for a read of its own);
* smuggle contents in through names: members whose name is absolute, has a ``..`` or ``.``
  component, or lies outside the archive's top folder are ignored;
* pass a link off as a file: symlinks, hard links, devices and directories are never read, so a
  path that is one reads as absent (``None``), as the contents API's non-file answers do.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from modelherd.clock import monotonic

KB, MB = 1024, 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    """When an archive is fetched instead of single files, and how much of one is accepted.

    * ``threshold`` 10: a request costs about as much as transferring a small repository's archive,
      and the archive takes two (the API's redirect, then the download), so below ~10 uncached files
      per-file reads are as fast and move far fewer bytes; 10 keeps a PR changing up to 9 manifests
      on per-file reads and gives every bigger PR a constant two requests per commit.
    * ``max_repo_kb`` 100 MB: the forge's repository size counts all history, packed; above it a
      single commit's archive is likely over ``max_bytes`` too, so the download is not even started.
    * ``max_bytes`` 25 MB compressed: at the 5–20 MB/s a forge's archive endpoint serves, a few
      seconds, which is what ~50 contents requests at 50–100 ms cost; beyond, per-file reads win.
    * ``max_unpacked`` 256 MB: what decompressing may produce in total (a gzip bomb stops there;
      about a second of CPU).
    * ``max_member`` 10 MB: a wanted file bigger than that is not held from the stream; it is read
      on its own (the contents/blob APIs serve it), so memory stays bounded by wanted small files.
    * ``seconds`` 60 and ``read_timeout`` 15: a stalled or crawling download is dropped.
    * ``hold_off`` 1 hour: after an archive was too big, the repository's next reads go file by file
      without trying again (a tree does not shrink between two pushes; the size is refreshed hourly).
    """

    threshold: int = 10
    max_repo_kb: int = 100 * KB
    max_bytes: int = 25 * MB
    max_unpacked: int = 256 * MB
    max_member: int = 10 * MB
    seconds: float = 60.0
    read_timeout: float = 15.0
    hold_off: float = 3600.0


class ArchiveRefused(Exception):
    """The archive could not be used (unreadable, too slow, refused by the forge): read file by file."""


class ArchiveTooBig(ArchiveRefused):
    """The archive is over a size limit: read file by file, and do not try this repository again soon."""


@dataclass
class Extracted:
    """What an archive held of the wanted paths."""

    files: dict[str, bytes | None] = field(default_factory=dict)   # every wanted path; None: absent/not a file
    oversized: set[str] = field(default_factory=set)                # regular files over max_member: read alone

    def usable(self) -> dict[str, bytes | None]:
        """The paths the archive answered for (all wanted paths but the oversized ones)."""
        return {p: data for p, data in self.files.items() if p not in self.oversized}


class CappedStream:
    """A read-only file object over ``chunks`` that refuses to deliver more than ``limit`` bytes, or to
    go on past ``deadline`` (``monotonic()``)."""

    def __init__(self, chunks: Iterable[bytes], limit: int, deadline: float):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = bytearray()
        self.limit, self.deadline, self.received = limit, deadline, 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._take(chunk)
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _take(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise ArchiveTooBig(f"the archive is over {self.limit:,} bytes")
        if monotonic() > self.deadline:
            raise ArchiveRefused("the archive took too long to download")
        self._buffer += chunk


def extract(chunks: Iterable[bytes], wanted: Iterable[str], limits: ArchiveLimits) -> Extracted:
    """The ``wanted`` repository paths out of a ``.tar.gz`` streamed as ``chunks``; wanted paths the
    archive does not hold as regular files read as ``None``.

    Raises :class:`ArchiveTooBig` over a limit, :class:`ArchiveRefused` when the stream is not a
    readable ``.tar.gz`` (or is too slow).
    """
    want = set(wanted)
    found = Extracted(files=dict.fromkeys(want))
    stream = CappedStream(chunks, limits.max_bytes, monotonic() + limits.seconds)
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            _walk(tar, want, limits, found)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:   # gzip/tar damage, cut stream
        raise ArchiveRefused(f"the archive is unreadable: {type(exc).__name__}: {exc}") from exc
    return found


def _walk(tar: tarfile.TarFile, want: set[str], limits: ArchiveLimits, found: Extracted) -> None:
    top: str | None = None
    unpacked = 0
    for member in tar:
        unpacked += max(member.size, 0)
        if unpacked > limits.max_unpacked:
            raise ArchiveTooBig(f"the archive unpacks to over {limits.max_unpacked:,} bytes")
        split = repo_path(member.name)
        if split is None:
            continue
        folder, path = split
        top = top or folder
        if folder != top or path not in want or not member.isreg():
            continue                                     # another tree, unwanted, or a link/dir/device
        if member.size > limits.max_member:
            found.oversized.add(path)
            continue
        handle = tar.extractfile(member)
        found.files[path] = handle.read() if handle is not None else None
        found.oversized.discard(path)


def repo_path(name: str) -> tuple[str, str] | None:
    """``(top folder, repository path)`` of an archive member's name; None for a name that could point
    anywhere but below the top folder (absolute, ``..``/``.``/empty components, backslashes) or that
    is the top folder itself."""
    if not name or name.startswith("/") or "\\" in name:
        return None
    parts = name.rstrip("/").split("/")
    if len(parts) < 2 or any(part in ("", ".", "..") for part in parts):
        return None
    return parts[0], "/".join(parts[1:])


__all__ = ["ArchiveLimits", "ArchiveRefused", "ArchiveTooBig", "CappedStream", "Extracted", "extract", "repo_path"]
