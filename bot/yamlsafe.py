"""Safe YAML: every value keeps its line and column, and hostile files are refused early.

PyYAML's own loaders give a plain ``dict`` with no positions, accept duplicate keys silently (the last
one wins) and expand aliases without bound (a "billion laughs" file takes the process down).  Here the
file is first read as a stream of parser events — iterative, no recursion — to enforce the size, depth,
alias and document limits before anything is built; then each document is composed with libyaml and
walked with a budget on the number of values produced, so alias expansion stops at a fixed size.

The result keeps two maps from a value's path (``("spec", "environments", "production")``) to the
position of its key and of its value, which is what turns a pydantic error into ``file:line:column``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # libyaml is much faster; fall back to the pure-Python parser where it is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

from modelherd.checks import Position

MAX_BYTES = 1 << 20          # a manifest over 1 MiB is not a manifest
MAX_DEPTH = 32               # nesting of mappings and sequences
MAX_ALIASES = 100            # alias references in one file
MAX_VALUES = 10_000          # values produced by one document, aliases expanded
MAX_DOCUMENTS = 50

Path = tuple[str | int, ...]

# Characters that reorder or hide text (CVE-2021-42574, "Trojan Source"): a reviewer would read
# something other than what the bot acts on.
_HIDDEN = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
           "\u200b", "\u200e", "\u200f", "\u2060", "\ufeff"}


class YamlError(Exception):
    """A file that cannot be read as data; carries the position and a hint for the author."""

    def __init__(self, message: str, position: Position | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.position = position
        self.hint = hint


@dataclass
class Document:
    data: Any
    index: int                                   # 0-based document number in the file
    start: Position
    key_positions: dict[Path, Position] = field(default_factory=dict)
    value_positions: dict[Path, Position] = field(default_factory=dict)

    def position_of(self, path: Path, prefer_key: bool = False) -> Position:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            prefix = tuple(path[:cut])
            if prefer_key and prefix in self.key_positions:
                return self.key_positions[prefix]
            if prefix in self.value_positions:
                return self.value_positions[prefix]
            if prefix in self.key_positions:
                return self.key_positions[prefix]
        return self.start


def _pos(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError("the file is not UTF-8 text", Position(line, column),
                        "save it as UTF-8") from None


def _refuse_hidden_characters(text: str) -> None:
    for lineno, line in enumerate(text.splitlines(), 1):
        for col, ch in enumerate(line, 1):
            if ch in _HIDDEN or (unicodedata.category(ch) == "Cc" and ch not in "\t"):
                name = unicodedata.name(ch, f"U+{ord(ch):04X}")
                raise YamlError(f"invisible or control character {name} (U+{ord(ch):04X})",
                                Position(lineno, col),
                                "remove it: it makes the text read differently from what it is")


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")} | {"!"}


def _prescan(text: str) -> None:
    """Walk parser events (no recursion, nothing built) and enforce the structural limits."""
    depth = aliases = documents = 0
    open_anchors: list[tuple[str | None, str]] = []   # anchors of the collections being read, outermost first
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlError(f"nesting deeper than {MAX_DEPTH} levels", _pos(event.start_mark),
                                    "a manifest is a few levels deep; this looks like a mistake or an attack")
                open_anchors.append((event.anchor,
                                     "mapping" if isinstance(event, yaml.MappingStartEvent) else "list"))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                if open_anchors:
                    open_anchors.pop()
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise YamlError(f"more than {MAX_ALIASES} alias references (*name)", _pos(event.start_mark),
                                    "write the values out instead of repeating anchors")
                inside = [kind for anchor, kind in open_anchors if anchor == event.anchor]
                if inside:
                    raise YamlError(f"alias *{event.anchor} refers to a {inside[-1]} it is inside "
                                    f"(a structure that contains itself)", _pos(event.start_mark),
                                    "a manifest cannot hold a recursive structure; write the values out")
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > MAX_DOCUMENTS:
                    raise YamlError(f"more than {MAX_DOCUMENTS} documents in one file", _pos(event.start_mark),
                                    "split the file")
            if getattr(event, "tag", None) and event.tag not in _PLAIN_TAGS:
                raise YamlError(f"tag {event.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed", _pos(event.start_mark),
                                "remove the tag; manifests are plain data")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.context and exc.context_mark and exc.problem_mark:
            message += f" ({exc.context} at {_pos(exc.context_mark)})"
        raise YamlError(message, _pos(mark) if mark else None,
                        "check indentation, quotes and colons around this place") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None


_constructor = yaml.constructor.SafeConstructor()
_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns a composed node tree into plain data, recording positions, with a value budget."""

    def __init__(self) -> None:
        self.values = 0
        self.keys: dict[Path, Position] = {}
        self.where: dict[Path, Position] = {}

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise YamlError(f"the document expands to more than {MAX_VALUES} values",
                            _pos(node.start_mark), "aliases may be multiplying the data; write it out")
        if depth > MAX_DEPTH:   # the prescan counted the text; aliases can nest structures deeper still
            raise YamlError(f"nesting deeper than {MAX_DEPTH} levels once aliases are expanded",
                            _pos(node.start_mark), "write the values out instead of nesting anchors")
        self.where.setdefault(path, _pos(node.start_mark))
        if isinstance(node, yaml.ScalarNode):
            try:
                value = _constructor.construct_object(node)
            except yaml.constructor.ConstructorError as exc:
                raise YamlError(f"cannot read value: {exc.problem}", _pos(node.start_mark)) from None
            except (ValueError, OverflowError) as exc:
                digits = sum(ch.isdigit() for ch in node.value)
                if node.tag == "tag:yaml.org,2002:int" and digits > 100:
                    raise YamlError(f"a number of {digits} digits", _pos(node.start_mark),
                                    "no manifest field takes a number that long; quote it if it is text") from None
                raise YamlError(f"cannot read value: {exc}", _pos(node.start_mark)) from None
            # dates and timestamps stay text: the schema decides what a field means
            if not isinstance(value, (str, int, float, bool, type(None))):
                value = node.value
            return value
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise YamlError("unsupported YAML node", _pos(node.start_mark))  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise YamlError("a merge key (<<) must refer to a mapping", _pos(src.start_mark))
                    merged.append(src)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("a key must be plain text, not a list or mapping", _pos(key_node.start_mark))
            key = key_node.value
            if key_node.tag != "tag:yaml.org,2002:str" and key_node.style is None:
                # `yes:` or `1:` as a key is text here; the schema only has text keys
                key = str(key_node.value)
            if key in result:
                first = self.keys.get(path + (key,))
                raise YamlError(f"duplicate key {key!r}" + (f" (first at line {first.line})" if first else ""),
                                _pos(key_node.start_mark), "keep one of them: YAML would silently use the last")
            self.keys[path + (key,)] = _pos(key_node.start_mark)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        for src in merged:  # explicit keys win over merged ones, as in YAML 1.1
            for key, value in self._mapping(src, path, depth).items():
                result.setdefault(key, value)
        return result


def load_documents(raw: bytes | str) -> list[Document]:
    """Parse every non-empty document of a file, or raise :class:`YamlError` with a position."""
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > MAX_BYTES:
        raise YamlError(f"file is {size:,} bytes; the limit is {MAX_BYTES:,}", Position(1, 1),
                        "a manifest is a few kilobytes; is this the right file?")
    text = _decode(raw)
    _refuse_hidden_characters(text)
    _prescan(text)
    documents = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            builder = _Builder()
            data = builder.build(node, ())
            documents.append(Document(data, index, _pos(node.start_mark), builder.keys, builder.where))
    except yaml.MarkedYAMLError as exc:  # pragma: no cover - the prescan catches syntax errors first
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(f"invalid YAML: {exc.problem}", _pos(mark) if mark else None) from None
    return documents
