"""Policy as code: Rego policies evaluated in-process with ``regopy``.

The policies are modelherd's default bundle (the ``*.rego`` files of :mod:`modelherd.policies`) plus a
repository's own, which the caller reads at the pull request's *base* revision.  All of them write to
``package modelherd``:

* ``deny contains msg``: the change is refused (an error finding);
* ``warn contains msg``: reported, not blocking (a warning finding);
* ``approvals contains {"count": 1, "owners": true, "reason": "..."}``: an approval the change needs.

A ``msg`` is a string or an object ``{"msg": "...", "field": "serving.resources.gpu", "policy": "id"}``
whose ``field`` is a dotted path into the *effective deployment* (see :func:`policy_input`), so
that :func:`to_findings` can put the finding on the right manifest line.

:class:`PolicyEngine` compiles the modules once into a regopy bundle and evaluates it for each input
under a lock.  A broken policy (syntax error, conflict, runtime error, a construct that crashes
regopy) raises :class:`PolicyError` naming the file and, where known, the line.  Nothing here does I/O
except :func:`default_modules`, which reads the packaged bundle.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import regopy
from regopy.rego_shared import (
    NodeKind,
    RegoError,
    rego_bundle_query,
    rego_free_output,
    rego_get_error,
    rego_node_get,
    rego_node_size,
    rego_node_type,
    rego_node_value,
    rego_output_node,
    rego_output_ok,
    rego_output_string,
    rego_query,
)

from modelherd.checks import Finding, Position, Severity
from modelherd.locate import parse_field
from modelherd.plan import ApprovalRequirement, Change

CHECK = "policy"
PACKAGE = "modelherd"

# One query returns the three outputs as arrays (a missing rule gives an empty array) and the type
# of each, so that an object written with Rego v0 syntax (`deny[msg] { ... }`) is reported.
_OUTPUTS = ("deny", "warn", "approvals")
_QUERY = "x := {" + ", ".join(
    f'"{o}": [m | some m in data.{PACKAGE}.{o}], "{o}_type": [type_name(v) | v := data.{PACKAGE}.{o}]'
    for o in _OUTPUTS) + "}"

Module = tuple[str, str]          # (file name, Rego source)
FieldPath = tuple[str | int, ...]


class PolicyError(Exception):
    """A policy could not be compiled or evaluated: a check *error*, never a crash."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(f"{where}{message}")


@dataclass(frozen=True, slots=True)
class Violation:
    """One ``deny`` or ``warn`` entry."""

    message: str
    field: str | None = None     # dotted path into the effective deployment, e.g. serving.resources.gpu
    policy: str | None = None    # the rule id (default bundle: canary-required, ...) when the policy gives one

    @property
    def field_path(self) -> FieldPath | None:
        return parse_field(self.field)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What the policies say about one input."""

    deny: list[Violation]
    warn: list[Violation]
    approvals: list[ApprovalRequirement]

    @property
    def allowed(self) -> bool:
        return not self.deny


@dataclass(frozen=True, slots=True)
class PolicyTestResult:
    """One ``test_*`` rule of a policy test module."""

    name: str                    # package.rule, e.g. modelherd_test.test_canary_required_denies_direct
    passed: bool
    error: str | None = None     # why it could not be evaluated (not set for a plain failure)
    file: str | None = None


# --------------------------------------------------------------------------------------------------
# Modules

def default_modules() -> list[Module]:
    """The default bundle: ``modelherd/policies/*.rego`` (test modules excluded), sorted by name."""
    return _package_modules(tests=False)


def default_test_modules() -> list[Module]:
    """The default bundle's tests: ``modelherd/policies/tests/*_test.rego``."""
    return _package_modules(tests=True)


def _package_modules(*, tests: bool) -> list[Module]:
    root = resources.files("modelherd.policies")
    folder = root / "tests" if tests else root
    out = []
    for entry in folder.iterdir():
        name = entry.name
        if entry.is_file() and name.endswith(".rego") and name.endswith("_test.rego") == tests:
            prefix = "policies/tests/" if tests else "policies/"
            out.append((prefix + name, entry.read_text(encoding="utf-8")))
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# Errors: regopy reports them as S-expressions, e.g.
#   (error 20:policies/bad.rego|63|2 (errormsg 27:Invalid assignment operator) ...)
# where "20:" and "27:" are lengths and 63|2 the byte offset and length in the module source.

_ERROR_AT = re.compile(r"\(error (\d+):")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")


def _length_prefixed(text: str, match: re.Match[str]) -> str:
    start = match.end()
    return text[start:start + int(match.group(1))]


def _parse_errors(text: str) -> list[tuple[str | None, int | None, str]]:
    """(file, byte offset, message) for each error in a regopy error text."""
    out = []
    chunks = text.split("(error ")[1:] or [text]
    for chunk in chunks:
        chunk = "(error " + chunk
        file = offset = None
        at = _ERROR_AT.match(chunk)
        if at:
            where = _length_prefixed(chunk, at)
            file = where
            rest = chunk[at.end() + len(where):]
            m = re.match(r"\|(\d+)\|", rest)
            offset = int(m.group(1)) if m else None
        msg = _ERRORMSG.search(chunk)
        out.append((file or None, offset, _length_prefixed(chunk, msg) if msg else chunk.strip()))
    return out


def _line_of(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset in ``source``."""
    before = source.encode("utf-8")[:offset].decode("utf-8", errors="replace")
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


def _compile_error(text: str, sources: Mapping[str, str]) -> PolicyError:
    """A :class:`PolicyError` for regopy's error text, located in the module it names."""
    errors = _parse_errors(text)
    file, offset, message = errors[0]
    line = column = None
    if file in sources and offset is not None:
        line, column = _line_of(sources[file], offset)
    if column:
        message = f"{column}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' * (len(errors) > 2)})"
    return PolicyError(message, file, line)


def _output_errors(output: int, interp: regopy.Interpreter) -> list[str]:
    """Messages of a failed evaluation, read without touching what crashes regopy."""
    text = rego_get_error(interp._impl)
    if text:
        return [text]
    messages: list[str] = []

    def walk(node: int) -> None:
        kind = rego_node_type(node)
        if kind in (NodeKind.ErrorMessage, NodeKind.ErrorCode):
            value = rego_node_value(node)
            if value:
                messages.append(value)
        for i in range(rego_node_size(node)):
            walk(rego_node_get(node, i))

    root = rego_output_node(output)
    if root:
        walk(root)
    return messages or ["evaluation failed"]


def _binding(node: int, name: str) -> int | None:
    """The value node bound to ``name`` in a query result (Results → Result → Bindings → Binding)."""
    kind = rego_node_type(node)
    if kind == NodeKind.Binding and rego_node_size(node) == 2:
        var = rego_node_get(node, 0)
        if rego_node_type(var) == NodeKind.Var and rego_node_value(var) == name:
            return rego_node_get(node, 1)
        return None
    if kind in (NodeKind.Results, NodeKind.Result, NodeKind.Bindings):
        for i in range(rego_node_size(node)):
            found = _binding(rego_node_get(node, i), name)
            if found:
                return found
    return None


def _string(escaped: str) -> str:
    """A string node's text: JSON-escaped content without its quotes (a raw quote is literal)."""
    try:
        return json.loads(f'"{escaped}"')
    except json.JSONDecodeError:
        return json.loads('"' + re.sub(r'(?<!\\)((?:\\\\)*)"', r'\1\\"', escaped) + '"')


def _node_value(node: int) -> Any:
    """Plain Python data from a regopy value node (sets become lists)."""
    kind = rego_node_type(node)
    if kind in (NodeKind.Term, NodeKind.Scalar):
        return _node_value(rego_node_get(node, 0))
    if kind == NodeKind.String:
        return _string(rego_node_value(node))
    if kind == NodeKind.Int:
        return int(rego_node_value(node))
    if kind == NodeKind.Float:
        return float(rego_node_value(node))
    if kind in (NodeKind.Boolean, NodeKind.True_, NodeKind.False_):
        return rego_node_value(node) == "true"
    if kind == NodeKind.Null:
        return None
    children = [rego_node_get(node, i) for i in range(rego_node_size(node))]
    if kind in (NodeKind.Array, NodeKind.Set):
        return [_node_value(c) for c in children]
    if kind == NodeKind.Object:
        items = (rego_node_get(c, i) for c in children for i in (0, 1))
        pairs = list(items)
        return {_node_value(pairs[i]): _node_value(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    raise PolicyError(f"unexpected value of kind {kind} in the policy output")


# --------------------------------------------------------------------------------------------------
# Locating a runtime error: regopy gives no position, so find where the named rule is written.

_RULE_HEAD = re.compile(r"^(?:default\s+)?([A-Za-z_][A-Za-z0-9_]*)\b(?=\s*(?:\(|\[|:=|=|\bif\b|\bcontains\b|\{|$))",
                        re.MULTILINE)
_KEYWORDS = {"package", "import", "else"}


def _definitions(modules: Sequence[Module]) -> dict[str, list[tuple[str, int]]]:
    """Rule name → [(file, line)] for the top-level rule heads of ``modules``."""
    out: dict[str, list[tuple[str, int]]] = {}
    for file, source in modules:
        for m in _RULE_HEAD.finditer(source):
            if m.group(1) not in _KEYWORDS:
                line = source.count("\n", 0, m.start()) + 1
                out.setdefault(m.group(1), []).append((file, line))
    return out


def _mentioned_rule(message: str, defs: Mapping[str, list[tuple[str, int]]]) -> str | None:
    """The rule an error message names (``Function not found: f``, ``... data.modelherd.deny``)."""
    for word in reversed(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", message)):
        name = word.rsplit(".", 1)[-1]
        if name in defs:
            return name
    return None


def _find_call(name: str, modules: Sequence[Module]) -> tuple[str, int] | None:
    """Where an undefined function ``name`` is called."""
    pattern = re.compile(rf"\b{re.escape(name)}\s*\(")
    for file, source in modules:
        for number, line in enumerate(source.splitlines(), 1):
            if pattern.search(line.split("#", 1)[0]):
                return file, number
    return None


# --------------------------------------------------------------------------------------------------
# Guarding against regopy crashes: some constructs (e.g. `with input.x as a_rule.field`) make
# regopy 1.5 crash the process while compiling.  New policy sets are compiled once in a child first.

_PROBE = r"""
import json, sys, regopy
job = json.load(sys.stdin)
r = regopy.Interpreter()
r.log_level = regopy.LogLevel.NONE
r.add_data(job["data"])
for name, text in job["modules"]:
    r.add_module(name, text)
bundle = r.build(job["query"])
r.set_input({})
r.query_bundle(bundle)
"""
_probed: set[int] = set()
_probed_lock = threading.Lock()


def _probe_in_child(modules: Sequence[Module], data: Mapping[str, Any], query: str) -> None:
    """Compile in a child process; raise :class:`PolicyError` if regopy crashes there."""
    job = json.dumps({"modules": list(modules), "data": data, "query": query}, sort_keys=True)
    key = hash(job)
    with _probed_lock:
        if key in _probed:
            return
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], input=job, text=True,
                              capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise PolicyError("the policies took over 120 s to compile") from None
    if proc.returncode < 0:
        files = ", ".join(name for name, _ in modules)
        raise PolicyError(
            f"the Rego engine crashed (signal {-proc.returncode}) compiling these policies: {files}. "
            "Known causes in regopy 1.5: `with input as …` (replace one key instead: "
            "`with input.manifest as m`) and `with … as rule.field` (assign the value to a local first)")
    with _probed_lock:
        _probed.add(key)


_WHOLE_INPUT_WITH = re.compile(r"\bwith\s+input\s+as\b")


def _check_known_crashers(modules: Sequence[Module]) -> None:
    """Refuse ``with input as …``: regopy 1.5 fails on it and then crashes reading the error."""
    for file, source in modules:
        for number, line in enumerate(source.splitlines(), 1):
            if _WHOLE_INPUT_WITH.search(line.split("#", 1)[0]):
                raise PolicyError("regopy cannot replace the whole input (`with input as …`); "
                                  "replace its keys instead, e.g. `with input.manifest as m`", file, number)


# --------------------------------------------------------------------------------------------------
# The engine

class PolicyEngine:
    """Compiled policies plus their data, evaluated for many inputs.

    ``modules`` are (file name, Rego source) pairs, usually :func:`default_modules` plus the
    repository's own; ``data`` is the repository's ``policies.data``, given to the policies as
    ``data.modelherd.config``.  Building compiles once; :meth:`evaluate` and :meth:`evaluate_many`
    reuse the compiled bundle and are safe to call from several threads.
    """

    def __init__(self, modules: Iterable[Module], data: Mapping[str, Any] | None = None, *,
                 crash_guard: bool = True):
        self.modules: list[Module] = list(modules)
        self.data: dict[str, Any] = dict(data or {})
        self._sources = dict(self.modules)
        self._lock = threading.Lock()
        _check_known_crashers(self.modules)
        full_data = {PACKAGE: {"config": self.data}}
        if crash_guard:
            _probe_in_child(self.modules, full_data, _QUERY)
        self._interp, self._bundle = self._build(full_data)

    def _build(self, full_data: dict[str, Any]) -> tuple[regopy.Interpreter, regopy.Bundle]:
        interp = regopy.Interpreter()
        interp.log_level = regopy.LogLevel.NONE
        try:
            interp.add_data(full_data)
        except RegoError as exc:
            raise PolicyError(f"policies.data cannot be given to the policies: {exc}") from None
        for name, source in self.modules:
            try:
                interp.add_module(name, source)
            except RegoError as exc:
                raise _compile_error(str(exc), self._sources) from None
        try:
            bundle = interp.build(_QUERY)
        except RegoError as exc:
            raise _compile_error(str(exc), self._sources) from None
        if not bundle.ok():
            raise PolicyError("the policies did not compile")
        return interp, bundle

    def evaluate(self, input_doc: Mapping[str, Any]) -> PolicyDecision:
        """The decision for one input document (see :func:`policy_input`)."""
        with self._lock:
            return self._evaluate(input_doc)

    def evaluate_many(self, inputs: Iterable[Mapping[str, Any]]) -> list[PolicyDecision]:
        """Decisions for many inputs, in order, holding the interpreter once.

        Measured (regopy 1.5.2): one query over an array of inputs (``with input.k as item.k`` in a
        comprehension) is *slower* than a loop over the compiled bundle and grows worse than
        linearly, so this is that loop.
        """
        with self._lock:
            return [self._evaluate(doc) for doc in inputs]

    def _evaluate(self, input_doc: Mapping[str, Any]) -> PolicyDecision:
        raw = self._query(input_doc)
        for output in _OUTPUTS:
            if raw.get(f"{output}_type", ["set"]) not in ([], ["set"]):
                raise PolicyError(f"`{output}` must be a set, not {raw[f'{output}_type'][0]}: "
                                  f"write `{output} contains msg if {{ ... }}` (Rego v1)")
        environment = _environment_name(input_doc)
        return PolicyDecision(
            deny=_violations(raw.get("deny"), "deny"),
            warn=_violations(raw.get("warn"), "warn"),
            approvals=_approvals(raw.get("approvals"), environment),
        )

    def _query(self, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self._interp.set_input(dict(input_doc))
        except (RegoError, TypeError, ValueError) as exc:
            raise PolicyError(f"the policy input is not JSON data: {exc}") from None
        output = rego_bundle_query(self._interp._impl, self._bundle._impl)
        if not output:
            raise PolicyError(rego_get_error(self._interp._impl) or "evaluation failed")
        try:
            if not rego_output_ok(output):
                raise self._runtime_error(_output_errors(output, self._interp), input_doc)
            text = rego_output_string(output)
            if text.startswith("(error") or text.startswith("(rego-errorseq"):
                raise self._runtime_error([m for _, _, m in _parse_errors(text)], input_doc)
            if text == "undefined":
                return {}
            # Read the result from regopy's node tree, never from its JSON text: regopy 1.5 does not
            # escape quotes that sprintf copies from input strings, so a registry tag could otherwise
            # break (or inject into) the decoded output.
            binding = _binding(rego_output_node(output), "x")
            return _node_value(binding) if binding else {}
        finally:
            rego_free_output(output)

    def _runtime_error(self, messages: list[str], input_doc: Mapping[str, Any]) -> PolicyError:
        """A :class:`PolicyError` for a failed evaluation, located as well as can be."""
        message = "; ".join(dict.fromkeys(messages))
        defs = _definitions(self.modules)
        name = _mentioned_rule(message, defs)
        if name is None and "not found" in message.lower():
            called = re.findall(r"not found:\s*([A-Za-z_][A-Za-z0-9_.]*)", message)
            site = _find_call(called[0].rsplit(".", 1)[-1], self.modules) if called else None
            if site:
                return PolicyError(message, *site)
        if name is None:
            name = self._failing_rule(defs, input_doc)
        if name is None:
            return PolicyError(message, ", ".join(n for n, _ in self.modules) or None)
        sites = defs[name]
        also = ", ".join(f"{f}:{n}" for f, n in sites[1:])
        return PolicyError(f"{message} (in rule {name}{'; also defined at ' + also if also else ''})", *sites[0])

    def _failing_rule(self, defs: Mapping[str, list[tuple[str, int]]], input_doc: Mapping[str, Any]) -> str | None:
        """The first rule (other than the outputs) whose own evaluation fails, found by asking each."""
        probe = regopy.Interpreter()
        probe.log_level = regopy.LogLevel.NONE
        probe.add_data({PACKAGE: {"config": self.data}})
        for file, source in self.modules:
            probe.add_module(file, source)
        probe.set_input(dict(input_doc))
        for name in sorted(defs, key=lambda n: (n in _OUTPUTS, n)):
            if not _query_succeeds(probe, f"data.{PACKAGE}.{name}"):
                return name
        return None


def _query_succeeds(interp: regopy.Interpreter, query: str) -> bool:
    """Whether ``query`` evaluates without an error (its value is not kept)."""
    try:
        output = rego_query(interp._impl, query)
    except RegoError:
        return False
    try:
        return rego_output_ok(output) and not rego_output_string(output).startswith("(error")
    finally:
        rego_free_output(output)


def _environment_name(input_doc: Mapping[str, Any]) -> str:
    env = input_doc.get("environment") or {}
    return str(env.get("name") or "") if isinstance(env, Mapping) else ""


# --------------------------------------------------------------------------------------------------
# Output → plain data

def _violation(entry: Any, output: str) -> Violation:
    if isinstance(entry, str):
        return Violation(entry)
    if isinstance(entry, Mapping) and isinstance(entry.get("msg"), str):
        field = entry.get("field")
        if isinstance(field, list):
            field = ".".join(str(p) for p in field)
        if field is not None and not isinstance(field, str):
            raise PolicyError(f"{output}: `field` must be a dotted path string, got {field!r}")
        policy = entry.get("policy")
        return Violation(entry["msg"], field or None, str(policy) if policy is not None else None)
    raise PolicyError(f"{output} entries must be a string or an object with a string `msg`; got {entry!r}")


def _violations(entries: Any, output: str) -> list[Violation]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise PolicyError(f"`{output}` must be a set: write `{output} contains msg if {{ ... }}`")
    found = {_violation(e, output) for e in entries}
    return sorted(found, key=lambda v: (v.policy or "", v.field or "", v.message))


def _names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"approvals: `{key}` must be a list of names, got {value!r}")
    return tuple(value)


def _approval(entry: Any, environment: str) -> ApprovalRequirement:
    if not isinstance(entry, Mapping):
        raise PolicyError(f"approvals entries must be objects like {{\"count\": 1, \"reason\": \"...\"}}; got {entry!r}")
    count = entry.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise PolicyError(f"approvals: `count` must be a whole number, got {count!r}")
    return ApprovalRequirement(
        environment=str(entry.get("environment") or environment), count=count,
        reason=str(entry.get("reason") or "required by policy"),
        users=_names(entry.get("users"), "users"), teams=_names(entry.get("teams"), "teams"),
        owners=bool(entry.get("owners", False)))


def _approvals(entries: Any, environment: str) -> list[ApprovalRequirement]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise PolicyError("`approvals` must be a set: write `approvals contains {...} if { ... }`")
    found = {_approval(e, environment) for e in entries}
    return sorted(found, key=lambda a: (a.environment, a.reason, a.count))


def to_findings(decision: PolicyDecision, *, file: str | None, model: str | None, environment: str | None,
                locate: Callable[[FieldPath | None], Position | None]) -> list[Finding]:
    """Findings of check ``policy``: deny → error, warn → warning.

    ``locate`` receives a violation's field as a path into the *effective deployment*
    (``("serving", "resources", "gpu")``, ``("rollout", "canary")``, ``("model", "alias")``) or None,
    and returns its position in the manifest.  Translating it is the caller's job: ``serving.*`` and
    ``model.*`` live under ``spec.serving`` / ``spec.model`` unless the environment overrides them
    (``spec.environments.<env>.resources`` / ``replicas`` / ``model``), ``rollout`` is
    ``spec.environments.<env>.rollout``, ``cluster`` is ``spec.environments.<env>.cluster`` and
    ``labels`` / ``owners`` are under ``metadata``.
    """
    out = []
    for severity, violations in ((Severity.ERROR, decision.deny), (Severity.WARNING, decision.warn)):
        for v in violations:
            out.append(Finding(CHECK, severity, v.message, file, locate(v.field_path), model, environment,
                               hint=f"policy rule {v.policy}" if v.policy else None))
    return out


# --------------------------------------------------------------------------------------------------
# The input document

def _version_ref(dep: Any, info: Any) -> str | None:
    """The resolved registry version when known, else the manifest's reference ("7", "@champion")."""
    if info is not None:
        return str(info.version)
    if dep is None:
        return None
    return str(dep.model.version) if dep.model.version is not None else f"@{dep.model.alias}"


def _rfc3339(now: datetime | str) -> str:
    if isinstance(now, str):
        return now
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_PR_KEYS = ("number", "author", "title", "base_ref", "head_sha", "labels")


def _pr_input(pr: Any) -> dict[str, Any] | None:
    """The pull request's facts from a mapping or an object with those attributes."""
    if pr is None:
        return None
    get = pr.get if isinstance(pr, Mapping) else (lambda k, d=None: getattr(pr, k, d))
    out = {k: get(k) for k in _PR_KEYS}
    out["labels"] = list(out["labels"] or [])
    return out


def _environment_input(name: str, config: Any, order: int) -> dict[str, Any]:
    approvals = getattr(config, "approvals", None)
    return {"name": name, "protected": bool(getattr(config, "protected", False)), "order": order,
            "approvals": approvals.model_dump(mode="json") if approvals is not None else None}


def policy_input(change: Change, *, environment_config: Any, cluster_facts: Mapping[str, Any] | None,
                 candidate: Any, current: Any, pr: Any, now: datetime | str, order: int = 0) -> dict[str, Any]:
    """The document policies see as ``input`` for one change (plain JSON data).

    ``environment_config`` is the repo config's :class:`~modelherd.repoconfig.EnvironmentConfig` (None
    for an environment it does not list), ``order`` its position in the promotion order,
    ``cluster_facts`` :meth:`ClusterConfig.facts` (None when the server does not know the cluster),
    ``candidate`` / ``current`` :class:`~modelherd.registry.ModelVersionInfo` of the version the change
    deploys and of the one serving now, ``pr`` the pull request (a mapping or object with number, author,
    title, base_ref, head_sha, labels) or None on the command line, ``now`` an aware datetime or an
    RFC 3339 string.
    """
    dep = change.deployment
    return {
        "manifest": change.head.model_dump(mode="json") if change.head is not None else None,
        "previous": change.base.model_dump(mode="json") if change.base is not None else None,
        "change": {
            "action": str(change.action), "name": change.name, "environment": change.environment,
            "changed_fields": list(change.changed_fields),
            "version_from": _version_ref(change.base, current),
            "version_to": _version_ref(change.head, candidate),
        },
        "environment": _environment_input(change.environment, environment_config, order),
        "cluster": dict(cluster_facts) if cluster_facts is not None else {"name": dep.cluster, "known": False},
        "registry": {"candidate": candidate.as_input() if candidate is not None else None,
                     "current": current.as_input() if current is not None else None},
        "pr": _pr_input(pr),
        "now": _rfc3339(now),
    }


# --------------------------------------------------------------------------------------------------
# Policy tests (regopy has no `opa test`)

_PACKAGE_LINE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


def discover_tests(test_modules: Sequence[Module]) -> list[tuple[str, str, str]]:
    """(file, package, rule) for each distinct ``test_*`` rule, in file order."""
    seen, out = set(), []
    for file, source in test_modules:
        package = _PACKAGE_LINE.search(source)
        if not package:
            continue
        for m in _TEST_RULE.finditer(source):
            key = (package.group(1), m.group(1))
            if key not in seen:
                seen.add(key)
                out.append((file, *key))
    return out


def run_policy_tests(modules: Sequence[Module], test_modules: Sequence[Module],
                     data: Mapping[str, Any] | None = None) -> list[PolicyTestResult]:
    """Evaluate every ``test_*`` rule of ``test_modules`` against ``modules``, like ``opa test``.

    A test passes when its rule is true.  A module that does not compile gives one failed result
    whose error names the file and line.
    """
    everything = list(modules) + list(test_modules)
    tests = discover_tests(test_modules)
    try:
        _check_known_crashers(everything)
        _probe_in_child(everything, {PACKAGE: {"config": dict(data or {})}}, "x := 1")
        interp = _test_interpreter(everything, data)
    except PolicyError as exc:
        return [PolicyTestResult("(compile)", False, str(exc), exc.file)]
    return [_run_test(interp, file, package, rule) for file, package, rule in tests]


def _test_interpreter(modules: Sequence[Module], data: Mapping[str, Any] | None) -> regopy.Interpreter:
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    interp.add_data({PACKAGE: {"config": dict(data or {})}})
    sources = dict(modules)
    for name, source in modules:
        try:
            interp.add_module(name, source)
        except RegoError as exc:
            raise _compile_error(str(exc), sources) from None
    interp.set_input({})
    return interp


def _run_test(interp: regopy.Interpreter, file: str, package: str, rule: str) -> PolicyTestResult:
    name = f"{package}.{rule}"
    try:
        output = rego_query(interp._impl, f"data.{package}.{rule}")
    except RegoError as exc:
        return PolicyTestResult(name, False, str(_compile_error(str(exc), {})), file)
    try:
        if not rego_output_ok(output):
            return PolicyTestResult(name, False, "; ".join(_output_errors(output, interp)), file)
        text = rego_output_string(output)
    finally:
        rego_free_output(output)
    if text.startswith("(error"):
        return PolicyTestResult(name, False, "; ".join(m for _, _, m in _parse_errors(text)), file)
    passed = text != "undefined" and json.loads(text).get("expressions") == [True]
    return PolicyTestResult(name, passed, None, file)
