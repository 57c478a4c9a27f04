"""Offline validators for the objects modelherd sends to Kubernetes, for tests and fake API servers.

* :func:`validate_inferenceservice` checks a KServe ``InferenceService`` against the
  ``openAPIV3Schema`` of the real CRD vendored in ``tests/contracts/kserve/``. The structural schema is converted to JSON Schema the way the API
  server reads it: ``x-kubernetes-int-or-string`` accepts an integer *or* a string,
  ``x-kubernetes-preserve-unknown-fields`` keeps unknown fields, ``nullable`` admits ``null``,
  ``x-kubernetes-list-type: map`` keys must be unique, and every other object with ``properties``
  rejects unknown fields (the API server's strict field validation, ``kubectl`` default).
* :func:`validate_builtin` checks built-in kinds (Deployment, Service, HorizontalPodAutoscaler, ...)
  with the strict JSON Schemas shipped by the ``kubernetes-validate`` package.

Both also check what the schemas leave to the API server's own validation: ``metadata`` (name,
namespace, label keys and values, annotations) and, for a Deployment, that the selector matches the
pod template's labels. Each returns a list of ``"path: message"`` strings, empty when valid.
Validators are built once per schema and cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import yaml
from jsonschema.validators import Draft202012Validator, extend
from packaging.version import Version
from referencing import Registry, Resource

from tests.contracts import contract_text

CRD_PARTS = ("kserve", "serving.kserve.io_inferenceservices.yaml.gz")
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
QUALIFIED_NAME = rf"({DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?"

# name rules per kind (the API server's, and KServe's webhook for InferenceService)
_NAME_RULES = {"InferenceService": DNS_1035, "Service": DNS_1035}
_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


# ------------------------------------------------------------------------------------- public API

def validate_inferenceservice(obj: Mapping[str, Any]) -> list[str]:
    """Problems with ``obj`` as a ``serving.kserve.io/v1beta1`` InferenceService; ``[]`` when valid."""
    return _errors(_kserve_validator(), obj) + _metadata_errors(obj)


def validate_builtin(obj: Mapping[str, Any], k8s_version: str = "1.32") -> list[str]:
    """Problems with ``obj`` as a built-in Kubernetes object of that version; ``[]`` when valid."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["apiVersion and kind are required strings"]
    validator = _builtin_validator(_schema_version(k8s_version), api_version, kind)
    if validator is None:
        return [f"no schema for {kind} ({api_version}) in Kubernetes {k8s_version}"]
    return _errors(validator, obj) + _metadata_errors(obj) + _semantic_errors(obj)


def structural_to_jsonschema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A Kubernetes structural schema (a CRD's ``openAPIV3Schema``) as JSON Schema (see module notes)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: structural_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = structural_to_jsonschema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [structural_to_jsonschema(sub) for sub in value]
        elif key in ("description", "default", "example", "nullable", "format") or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    _apply_extensions(node, out)
    return out


# ----------------------------------------------------------------------------- schema conversion

def _apply_extensions(node: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Translate the ``x-kubernetes-*`` extensions, ``nullable`` and integer formats of ``node``."""
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        for name in ("apiVersion", "kind"):
            props.setdefault(name, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("type") == "integer" and node.get("format") in _INT_BOUNDS:
        low, high = _INT_BOUNDS[node["format"]]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-list-type") == "map" and node.get("x-kubernetes-list-map-keys"):
        out["x-kubernetes-list-map-keys"] = list(node["x-kubernetes-list-map-keys"])
    if node.get("nullable"):
        _allow_null(out)


def _allow_null(out: dict[str, Any]) -> None:
    """Let ``out`` also accept ``null`` (OpenAPI ``nullable: true``)."""
    if "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    elif isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """``x-kubernetes-list-type: map``: no two items may share the same key fields."""
    if not validator.is_type(instance, "array"):
        return
    seen: dict[tuple[Any, ...], int] = {}
    for index, item in enumerate(instance):
        if not isinstance(item, Mapping):
            continue
        key = tuple(repr(item.get(k)) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
            yield jsonschema.ValidationError(f"duplicate entries for {shown} (items {seen[key]} and {index})")
        seen[key] = index


_KubeValidator = extend(Draft202012Validator, {"x-kubernetes-list-map-keys": _list_map_keys})


# ------------------------------------------------------------------------------------- validators

@functools.cache
def _kserve_validator() -> Any:
    """The InferenceService validator built from the CRD."""
    text = contract_text(*CRD_PARTS)
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"const": KSERVE_API_VERSION}
    schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata", "spec"})
    return _KubeValidator(schema)


def _schema_version(k8s_version: str) -> str:
    """The newest schema set shipped by kubernetes-validate that is not newer than ``k8s_version``."""
    from kubernetes_validate import utils

    wanted = Version(k8s_version.lstrip("v"))
    wanted_minor = (wanted.major, wanted.minor)
    usable = [v for v in utils.all_versions() if (Version(v).major, Version(v).minor) <= wanted_minor]
    if not usable:
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {k8s_version} or older")
    return usable[-1]


@functools.cache
def _builtin_validator(schema_version: str, api_version: str, kind: str) -> Any | None:
    """The strict kubernetes-validate schema of ``kind`` as a cached validator, ``None`` if unknown."""
    from kubernetes_validate import utils

    directory = f"kubernetes-json-schema/v{schema_version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{directory}/{kind.lower()}-{group}.json", schema_version)
    except FileNotFoundError:
        return None
    definitions = utils.schema_contents(f"{directory}/_definitions.json", schema_version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return Draft202012Validator(schema, registry=registry)


def _errors(validator: Any, obj: Any) -> list[str]:
    """All schema errors of ``obj`` as ``"path: message"``, sorted by path."""
    found = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_path(e.absolute_path)}: {e.message}" for e in found]


def _path(parts: Any) -> str:
    """A JSON path as ``spec.containers[0].name`` (``<root>`` for the object itself)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


# ------------------------------------------------------------- checks the schemas leave to the server

def _metadata_errors(obj: Mapping[str, Any]) -> list[str]:
    """Name, namespace, labels and annotations as the API server validates ``ObjectMeta``."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return ["metadata: required object"]
    errors = [] if "name" in meta else ["metadata.name: required"]
    name_rule = _NAME_RULES.get(str(obj.get("kind")), DNS_SUBDOMAIN)
    errors += _match(meta, "name", name_rule, 63 if name_rule != DNS_SUBDOMAIN else 253)
    errors += _match(meta, "namespace", DNS_LABEL, 63)
    errors += _label_errors("metadata.labels", meta.get("labels"))
    errors += _annotation_errors(meta.get("annotations"))
    return errors


def _match(meta: Mapping[str, Any], field: str, pattern: str, limit: int) -> list[str]:
    """``meta[field]``, when present, must be a string of at most ``limit`` matching ``pattern``."""
    value = meta.get(field)
    if value is None:
        return []
    if not isinstance(value, str) or len(value) > limit or not re.fullmatch(pattern, value):
        return [f"metadata.{field}: {value!r} must match {pattern} (at most {limit} characters)"]
    return []


def _label_errors(where: str, labels: Any) -> list[str]:
    """Label keys must be qualified names, values valid label values (both strings)."""
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [f"{where}: must be a map of strings"]
    errors = []
    for key, value in labels.items():
        if not isinstance(key, str) or not _qualified_name(key):
            errors.append(f"{where}: invalid label key {key!r}")
        if not isinstance(value, str) or not re.fullmatch(LABEL_VALUE, value):
            errors.append(f"{where}.{key}: invalid label value {value!r}")
    return errors


def _annotation_errors(annotations: Any) -> list[str]:
    """Annotation keys must be qualified names and values strings."""
    if annotations is None:
        return []
    if not isinstance(annotations, Mapping):
        return ["metadata.annotations: must be a map of strings"]
    return [f"metadata.annotations: invalid entry {key!r}: {value!r}" for key, value in annotations.items()
            if not isinstance(key, str) or not _qualified_name(key) or not isinstance(value, str)]


def _qualified_name(key: str) -> bool:
    """A label/annotation key: optional DNS-subdomain prefix (≤253) and a name of at most 63."""
    prefix, _, name = key.rpartition("/")
    return bool(re.fullmatch(QUALIFIED_NAME, key)) and len(prefix) <= 253 and len(name) <= 63


def _semantic_errors(obj: Mapping[str, Any]) -> list[str]:
    """Cross-field rules: a Deployment's selector must select its own pods; an HPA's range must hold."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    errors: list[str] = []
    if obj.get("kind") == "Deployment":
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        template = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not wanted or any(template.get(k) != v for k, v in wanted.items()):
            errors.append("spec.template.metadata.labels: `selector` does not match template `labels`")
        errors += _label_errors("spec.template.metadata.labels", template)
    if obj.get("kind") == "HorizontalPodAutoscaler":
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
        if isinstance(low, int) and isinstance(high, int) and not 1 <= low <= high:
            errors.append(f"spec.minReplicas: must be from 1 to maxReplicas ({high}), not {low}")
    return errors
