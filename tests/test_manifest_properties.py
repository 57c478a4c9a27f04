"""Property-based tests of the manifest pipeline: whatever a pull request holds, `validate` either
accepts it, and then it plans and renders without an exception (into objects the real schemas accept,
at every rollout step), or it answers with findings that each name file:line:column; it never raises.

Two families of input: manifests of the right shape whose field values are drawn at random (mostly
valid, a few fields hostile at a time: NaN and infinite bounds, numbers of thousands of digits, names
that are not DNS labels, label values no node can carry...), and YAML text mutated at random (lines
dropped, duplicated or re-indented, hostile scalars, anchors and aliases spliced in).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelherd.checks import Severity
from modelherd.comment import render_plan
from modelherd.loading import load_manifests
from modelherd.manifest import effective
from modelherd.plan import plan_to_dict
from modelherd.planner import PlanContext, build_plan
from modelherd.registry import ModelVersionInfo
from modelherd.registry.memory import InMemoryRegistry
from modelherd.render import render
from modelherd.rollout import plan_steps
from tests.kube_schemas import validate_builtin, validate_inferenceservice

FILE = "models/m.yaml"
CONFIG = b"""version: 1
manifests: ["models/**/*.yaml"]
environments:
  - name: staging
  - name: production
    protected: true
    approvals: {count: 1, owners: true}
"""
CLUSTERS = {"onprem-a": {"name": "onprem-a", "provider": "onprem", "onprem": True, "gpus": True, "known": True}}

# Hypothesis keeps no example database (nothing written into the checkout) and has no deadline: the
# suite may run under a shifted clock, and a plan evaluates Rego.
PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------------
# YAML text from plain data, with room for raw (hostile) scalars
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A scalar written into the YAML as is: ``.nan``, ``*alias``, 5000 digits..."""

    text: str


def scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)   # a JSON string is a YAML double-quoted scalar
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {scalar(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def to_yaml(data: dict[str, Any], indent: int = 0) -> str:
    """Block mappings down to the leaves, flow style for lists and small mappings."""
    lines = []
    for key, value in data.items():
        pad = " " * indent
        if isinstance(value, dict) and value and indent < 8:
            lines.append(f"{pad}{scalar(key)}:")
            lines.append(to_yaml(value, indent + 2))
        else:
            lines.append(f"{pad}{scalar(key)}: {scalar(value)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------

HOSTILE = [".nan", ".inf", "-.inf", "1.0e+400", "-1.0e+400", "1e400", "9" * 5000, "-" + "9" * 4400, "99999999999999999999",
           "~", "''", "yes", "no", "on", "0x1F", "0o17", "1_000", "2026-01-01", "12:30:00", "!!binary aGk=",
           "*nope", "[]", "{}", "-1", "0", "0.0", "-0", "'bad value!'", "'1model'", "'Fraud'", '"a\\tb"',
           "'" + "a" * 64 + "'", "!!python/object:os.system ls", "[[[[[[]]]]]]", "'\\u202e'", '"\\u202e"',
           "!!float 1", "!!str 5", "<<", "'='", "&a 1", "|\n  text", ">-\n  folded", '"\\ud800"']

dns = st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
long_dns = st.from_regex(r"[a-z][-a-z0-9]{40,61}[a-z0-9]", fullmatch=True)
label_value = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
# text a person would type: no control, format (bidi, zero-width) or surrogate characters
words = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs")), max_size=40)
quantity = st.one_of(st.sampled_from(["1", "500m", "2Gi", "0.5", "1e3", "128Mi", "2", "100k"]),
                     st.integers(0, 64), st.from_regex(r"[0-9]{1,4}(m|Mi|Gi|k|M|G)?", fullmatch=True))
hostile = st.one_of(st.sampled_from(HOSTILE).map(Raw), st.text(max_size=30), st.integers(), st.floats(),
                    st.booleans(), st.none(), st.lists(st.integers(), max_size=3))


def canary_steps() -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, 99), max_size=4, unique=True).map(lambda xs: sorted(xs) + [100])


def gate() -> st.SearchStrategy[dict[str, Any]]:
    bounds = st.fixed_dictionaries({}, optional={
        "min": finite, "max": finite,
        "max_regression": st.one_of(st.floats(0, 1e6), st.integers(0, 500).map(lambda n: f"{n}%")),
        "mode": st.sampled_from(["enforce", "warn"])})

    def ordered(t: tuple[str | None, dict[str, Any]]) -> dict[str, Any]:
        goal, gate = t
        if "min" in gate and "max" in gate and gate["min"] > gate["max"]:
            gate["min"], gate["max"] = gate["max"], gate["min"]
        if goal is None and ("min" in gate) == ("max" in gate):
            goal = "maximize"
        return ({"goal": goal} if goal else {}) | gate

    return st.tuples(st.sampled_from([None, "maximize", "minimize"]), bounds).map(ordered)


GOOD: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(dns, long_dns),
    "description": st.one_of(st.none(), words),
    "owners": st.lists(st.sampled_from(["alice", "@acme/risk-ml", "bob"]), max_size=2),
    "labels": st.dictionaries(st.sampled_from(["team", "data-class", "acme.io/tier"]), label_value, max_size=2),
    "model_name": st.one_of(st.just("fraud-detector"), words.filter(bool)),
    "version": st.integers(1, 2**31 - 1),
    "alias": st.sampled_from(["champion", "challenger"]),
    "runtime": st.sampled_from(["kserve", "deployment"]),
    "format": st.sampled_from(["sklearn", "xgboost", "pytorch", "onnx", "mlflow"]),
    "image": st.sampled_from(["ghcr.io/acme/fraud:1.4", "registry.local/m@sha256:" + "a" * 64]),
    "deployment_mode": st.sampled_from(["Standard", "Knative"]),
    "protocol": st.sampled_from(["v1", "v2", "grpc-v2"]),
    "port": st.integers(1, 65535),
    "cpu": quantity, "memory": quantity,
    "gpu": st.integers(0, 16),
    "gpu_type": st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,40}[A-Za-z0-9])?", fullmatch=True),
    "min": st.integers(0, 1000), "max": st.integers(1, 1000),
    "scale_metric": st.sampled_from(["cpu", "memory", "concurrency", "rps"]),
    "scale_target": st.integers(1, 10_000),
    "timeout_seconds": st.integers(1, 3600),
    "env": st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), words, max_size=3),
    "gates": st.dictionaries(st.sampled_from(["auc", "latency_p99_ms", "f1"]), gate(), max_size=3),
    "environments": st.lists(st.sampled_from(["staging", "production", "eu-canary"]), min_size=1, max_size=3,
                             unique=True),
    "cluster": st.just("onprem-a"),
    "namespace": dns,
    "canary": st.one_of(st.none(), canary_steps()),
    "verify_for": st.one_of(st.sampled_from(["0s", "30s", "10m", "1h30m"]), st.integers(0, 86400)),
    "timeout": st.sampled_from(["15m", "1h", 600]),
}
FIELDS = sorted(GOOD)


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """A manifest of the right shape; a few of its fields (often none) hostile."""
    how_many = draw(st.sampled_from([0, 0, 1, 2, 3]))
    bad = draw(st.sets(st.sampled_from(FIELDS), min_size=how_many, max_size=how_many))

    def v(field: str) -> Any:
        return draw(hostile if field in bad else GOOD[field])

    def maybe(field: str) -> bool:
        return field in bad or draw(st.booleans())

    serving: dict[str, Any] = {"runtime": v("runtime")}
    if serving["runtime"] == "deployment" and "runtime" not in bad:
        serving["image"] = v("image")
    else:
        serving["format"] = v("format")
        if maybe("deployment_mode"):
            serving["deployment_mode"] = v("deployment_mode")
        if maybe("protocol"):
            serving["protocol"] = v("protocol")
    for field in ("port", "timeout_seconds", "env"):
        if maybe(field):
            serving[field] = v(field)
    resources = {f: v(f) for f in ("cpu", "memory", "gpu", "gpu_type") if maybe(f)}
    if resources:
        serving["resources"] = resources
    replicas = {f: v(f) for f in ("min", "max", "scale_metric", "scale_target") if maybe(f)}
    if not bad & {"min", "max"} and replicas.get("max", 1000) < replicas.get("min", 1):
        replicas["min"], replicas["max"] = replicas["max"], replicas["min"]
    if replicas:
        serving["replicas"] = replicas
    model: dict[str, Any] = {"name": v("model_name")}
    if "version" in bad or draw(st.booleans()):
        model["version"] = v("version")
    else:
        model["alias"] = v("alias")
    metadata: dict[str, Any] = {"name": v("name")}
    for field in ("description", "owners", "labels"):
        if maybe(field):
            metadata[field] = v(field)
    envs: dict[str, Any] = {}
    names = v("environments")
    for env in names if isinstance(names, list) else [names]:
        entry: dict[str, Any] = {"cluster": v("cluster"), "namespace": v("namespace")}
        rollout = {f: v(f) for f in ("canary", "verify_for", "timeout") if maybe(f)}
        if rollout:
            entry["rollout"] = rollout
        if draw(st.booleans()):
            entry["replicas"] = {f: v(f) for f in ("min", "max", "scale_metric") if maybe(f)}
        if draw(st.booleans()):
            entry["model"] = {"version": v("version")}
        envs[env if isinstance(env, (str, Raw)) else scalar(env)] = entry
    spec: dict[str, Any] = {"model": model, "serving": serving}
    if maybe("gates"):
        spec["gates"] = {"metrics": v("gates")}
    spec["environments"] = envs
    return to_yaml({"apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment", "metadata": metadata,
                    "spec": spec}) + "\n"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A manifest's text with a few random edits: hostile YAML, not only hostile values."""
    lines = draw(manifests()).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["drop", "dup", "indent", "dedent", "splice", "anchor", "alias", "raw"]))
        if edit == "drop":
            del lines[i]
        elif edit == "dup":
            lines.insert(i, lines[i])
        elif edit == "indent":
            lines[i] = " " * draw(st.integers(1, 3)) + lines[i]
        elif edit == "dedent":
            lines[i] = lines[i].lstrip()
        elif edit == "splice":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.one_of(st.sampled_from(HOSTILE + [":", "- ", "{", "]", "#", "\t", "'", '"', "&", "*", "!"]),
                                                      st.text(max_size=5))) + lines[i][at:]
        elif edit == "anchor" and ": " in lines[i]:
            key, _, rest = lines[i].partition(": ")
            lines[i] = f"{key}: &a {rest}"
        elif edit == "alias" and ": " in lines[i]:
            key, _, _ = lines[i].partition(": ")
            lines[i] = f"{key}: *a"
        elif edit == "raw" and ": " in lines[i]:
            key, _, _ = lines[i].partition(": ")
            lines[i] = f"{key}: {draw(st.sampled_from(HOSTILE))}"
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------------------------------


class Source:
    """A repository of one change: ``base`` holds ``base_text`` (if any), ``head`` holds ``text``."""

    def __init__(self, text: str, base_text: str | None):
        self.files = {"base": {".modelherd.yaml": CONFIG}, "head": {".modelherd.yaml": CONFIG, FILE: text.encode()}}
        if base_text is not None:
            self.files["base"][FILE] = base_text.encode()

    def changed_files(self, base: str, head: str) -> list[str]:
        return [FILE]

    def read_many(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        return {p: self.files[ref].get(p) for p in paths}

    def list_files(self, ref: str, folder: str) -> list[str]:
        return [p for p in self.files[ref] if p.startswith(folder)]


def version_of(name: str, version: str, metrics: dict[str, float]) -> ModelVersionInfo:
    return ModelVersionInfo(name=name, version=version, status="READY", storage_uri=f"s3://models/{version}",
                            source=f"s3://models/{version}", run_id="r", metrics=metrics,
                            tags={"validation_status": "passed"})


def assert_findings_are_placed(text: str, findings) -> None:
    lines = text.count("\n") + 1
    for f in findings:
        assert f.file == FILE, f.one_line()
        assert f.position is not None, f.one_line()
        assert 1 <= f.position.line <= lines + 1 and f.position.column >= 1, f.one_line()
        assert f.message, f.one_line()


def assert_plans(text: str, metrics: dict[str, float]) -> None:
    """What `plan` and the rollout engine do with an accepted manifest: nothing raises."""
    loaded, findings = load_manifests(FILE, text)
    if any(f.severity is Severity.ERROR for f in findings):
        event("refused")
        return
    event("accepted: rendered and planned")
    for lm in loaded:
        manifest = lm.manifest
        for env in manifest.spec.environments:
            dep = effective(manifest, env)
            pinned = str(dep.model.version) if dep.model.version is not None else "7"
            candidate = version_of(dep.model.name, pinned, metrics)
            stable = version_of(dep.model.name, "1", {})
            render(dep, None)
            render(dep, candidate)
            steps, _ = plan_steps(dep, target="kubernetes", stable=stable)
            for percent in steps:
                for obj in render(dep, candidate, canary_percent=percent, stable=stable):
                    # and the cluster would take it: the real CRD / built-in schemas and metadata rules
                    errors = (validate_inferenceservice(obj) if obj["kind"] == "InferenceService"
                              else validate_builtin(obj))
                    assert errors == [], (obj["kind"], errors)
                render(dep, stable)   # the rollback
        registry = InMemoryRegistry()
        model = manifest.spec.model
        if model.version is not None:
            registry.add(model.name, model.version, metrics=metrics)
            registry.add(model.name, 1, metrics={k: v / 2 for k, v in metrics.items()})
        for env in manifest.spec.environments.values():
            if env.model is not None and env.model.version is not None:
                registry.add(model.name, env.model.version, metrics=metrics)
        base = text.replace(f"version: {model.version}", "version: 1") if model.version is not None else None
        ctx = PlanContext(registries={"mlflow": registry}, clusters=CLUSTERS, now="2026-11-26T12:00:00Z",
                          repository="acme/models")
        plan = build_plan(Source(text, base), "base", "head", ctx)
        render_plan(plan)
        json.dumps(plan_to_dict(plan), default=str)


registry_metrics = st.dictionaries(st.sampled_from(["auc", "latency_p99_ms", "f1"]),
                                   st.floats(allow_infinity=False), max_size=3)


@PROPERTY
@given(text=manifests(), metrics=registry_metrics)
def test_a_manifest_is_either_refused_with_placed_findings_or_planned(text: str, metrics: dict[str, float]):
    loaded, findings = load_manifests(FILE, text)
    assert_findings_are_placed(text, findings)
    assert_plans(text, metrics)


@PROPERTY
@given(text=mutated(), metrics=registry_metrics)
def test_mutated_yaml_is_either_refused_with_placed_findings_or_planned(text: str, metrics: dict[str, float]):
    loaded, findings = load_manifests(FILE, text)
    assert_findings_are_placed(text, findings)
    assert_plans(text, metrics)


@PROPERTY
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_any_bytes_are_refused_or_loaded_never_raised(raw: bytes | str):
    loaded, findings = load_manifests(FILE, raw)
    for f in findings:
        assert f.position is not None and f.position.line >= 1 and f.position.column >= 1, f.one_line()
