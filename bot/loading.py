"""Reading manifest files: safe YAML → :class:`ModelDeployment`, every error at ``file:line:column``.

Nothing here touches the disk or the network: callers pass the file's name and bytes, whatever forge
or checkout they came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelherd.checks import Finding, Position, Severity
from modelherd.manifest import API_VERSION, DNS_1035, DNS_LABEL, KIND, LABEL_VALUE, ModelDeployment, serving_problems
from modelherd.yamlsafe import Document, YamlError, load_documents


@dataclass(frozen=True)
class LoadedManifest:
    file: str
    manifest: ModelDeployment
    document: Document

    def position(self, *path: str | int) -> Position:
        return self.document.position_of(tuple(path))


_DNS_HINT = "use lower-case letters, digits and '-', starting and ending with a letter or digit (a DNS label)"
_PATTERN_HINTS = {
    DNS_LABEL: _DNS_HINT,
    DNS_1035: "use lower-case letters, digits and '-', starting with a letter and ending with a letter or digit "
              "(a DNS-1035 label: it names the Service or InferenceService)",
    LABEL_VALUE: "a Kubernetes label value: letters, digits, '-', '_' and '.', starting and ending with a letter "
                 "or digit, at most 63 characters",
}

_HINTS = {
    "extra_forbidden": "unknown field; check its spelling and indentation (see `modelherd schema`)",
    "missing": "add this required field",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "string_type": "quote the value to make it text",
    "literal_error": None,
    "string_pattern_mismatch": None,
    "bool_type": "write true or false",
    "finite_number": "write a real number: .nan and .inf compare false with everything, so such a gate "
                     "could never fail",
}


def _describe(error: dict[str, Any], path: tuple[str | int, ...]) -> tuple[str, str | None]:
    loc = ".".join(str(p) for p in path)
    kind = error["type"]
    msg = error["msg"]
    if kind.startswith("value_error") and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        return f"unknown field `{loc}`", _HINTS[kind]
    if kind == "missing":
        return f"`{loc}` is required", _HINTS[kind]
    if kind == "string_pattern_mismatch":
        got = error.get("input")
        pattern = (error.get("ctx") or {}).get("pattern", "")
        hint = _PATTERN_HINTS.get(pattern, f"it must match the pattern {pattern}")
        return f"`{loc}`: {got!r} is not allowed here", hint
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return f"`{loc}`: expected text, got a boolean", \
            "YAML reads yes/no/on/off/true/false as booleans: quote the value"
    return (f"`{loc}`: {msg}" if loc else msg), _HINTS.get(kind)


def _is_internal(part: Any) -> bool:
    # pydantic puts validator names into locations of unions and tagged values; users never wrote those
    return isinstance(part, str) and ("[" in part or part in {"function-after", "function-before"})


# pydantic names the member of a union (``str | int``) that failed after the field: ``timeout.str``
_UNION_MEMBERS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _data_path(loc: tuple[Any, ...], doc: Document) -> tuple[str | int, ...]:
    path = tuple(p for p in loc if not _is_internal(p))
    if path and path[-1] in _UNION_MEMBERS and path not in doc.value_positions:
        path = path[:-1]
    return path


def validation_findings(file: str, doc: Document, exc: ValidationError, model: str | None = None) -> list[Finding]:
    findings = []
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors(include_url=False):
        path = _data_path(error["loc"], doc)
        message, hint = _describe(error, path)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        prefer_key = error["type"] in {"extra_forbidden"}
        findings.append(Finding("schema", Severity.ERROR, message, file,
                                doc.position_of(path, prefer_key=prefer_key), model=model, hint=hint))
    return findings


def load_manifests(file: str, raw: bytes | str) -> tuple[list[LoadedManifest], list[Finding]]:
    """All ModelDeployment documents of one file, and the findings for those that are not valid."""
    try:
        documents = load_documents(raw)
    except YamlError as exc:
        return [], [Finding("schema", Severity.ERROR, exc.message, file, exc.position or Position(1, 1),
                            hint=exc.hint)]
    loaded: list[LoadedManifest] = []
    findings: list[Finding] = []
    if not documents:
        return [], [Finding("schema", Severity.ERROR, "the file holds no document", file, Position(1, 1),
                            hint=f"a manifest starts with `apiVersion: {API_VERSION}` and `kind: {KIND}`")]
    for doc in documents:
        data = doc.data
        if not isinstance(data, dict):
            findings.append(Finding("schema", Severity.ERROR,
                                    f"document {doc.index + 1} is a {type(data).__name__}, not a mapping",
                                    file, doc.start, hint=f"start with `apiVersion: {API_VERSION}`"))
            continue
        if data.get("apiVersion") != API_VERSION or data.get("kind") != KIND:
            got = f"{data.get('apiVersion')!r}/{data.get('kind')!r}"
            findings.append(Finding("schema", Severity.ERROR,
                                    f"document {doc.index + 1} is {got}, not {API_VERSION}/{KIND}",
                                    file, doc.position_of(("apiVersion",)),
                                    hint="only model manifests belong under the manifest paths; "
                                         "move other files or narrow `manifests:` in .modelherd.yaml"))
            continue
        name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
        try:
            manifest = ModelDeployment.model_validate(data)
        except ValidationError as exc:
            findings.extend(validation_findings(file, doc, exc, model=name if isinstance(name, str) else None))
            continue
        problems = serving_problems(manifest)
        if problems:
            findings.extend(Finding("schema", Severity.ERROR, p.message, file, doc.position_of(p.path),
                                    model=manifest.metadata.name, hint=p.hint) for p in problems)
            continue
        loaded.append(LoadedManifest(file, manifest, doc))
    return loaded, findings


@dataclass
class ManifestSet:
    """The manifests of several files, and every finding about them."""

    manifests: list[LoadedManifest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    broken_files: set[str] = field(default_factory=set)   # files with a document that did not load

    def by_name(self) -> dict[str, LoadedManifest]:
        return {lm.manifest.metadata.name: lm for lm in self.manifests}


def load_files(contents: Mapping[str, bytes | None]) -> ManifestSet:
    """Load many files (``None`` = absent at this revision); a name defined twice is an error."""
    result = ManifestSet()
    seen: dict[str, str] = {}
    for path in sorted(contents):
        raw = contents[path]
        if raw is None:
            continue
        loaded, findings = load_manifests(path, raw)
        result.findings.extend(findings)
        if any(f.severity is Severity.ERROR for f in findings):
            result.broken_files.add(path)
        for lm in loaded:
            name = lm.manifest.metadata.name
            if name in seen:
                result.findings.append(Finding(
                    "schema", Severity.ERROR, f"model deployment {name!r} is also defined in {seen[name]}",
                    path, lm.position("metadata", "name"), model=name,
                    hint="each metadata.name must be unique in the repository"))
                continue
            seen[name] = path
            result.manifests.append(lm)
    return result
