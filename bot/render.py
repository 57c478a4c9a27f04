"""Render one :class:`~modelherd.manifest.Deployment` into the Kubernetes objects that serve it.

Pure: no cluster, no registry. The planner resolves the model version first and passes it in as
:class:`~modelherd.registry.ModelVersionInfo`; ``storageUri`` / ``MODEL_URI`` are always the version's
real artifact location (never a ``models:/`` URI, which KServe cannot fetch).

* ``runtime: kserve`` renders one ``serving.kserve.io/v1beta1`` ``InferenceService``.
* ``runtime: deployment`` renders an ``apps/v1`` ``Deployment`` and a ``v1`` ``Service``, plus an
  ``autoscaling/v2`` ``HorizontalPodAutoscaler`` when ``replicas.max`` is above ``replicas.min``.

Canary traffic (``canary_percent`` below 100) depends on the KServe deployment mode:

* **Knative** — ``spec.predictor.canaryTrafficPercent``. KServe keeps the last fully rolled-out
  revision itself, so the object carries only the candidate.
* **Standard** — the CRD has no ``canaryTrafficPercent`` semantics here (it is Knative-only, and
  KServe's webhook rejects it together with ``spec.canary``); instead ``spec.canary[]`` holds
  ``{predictor, trafficPercent}`` items. Each canary predictor runs as its own Deployment named
  ``<isvc>-<predictor.name>-predictor`` (at most 63 characters) next to the stable
  ``spec.predictor``. The object must therefore carry *both* versions, so the caller passes the
  version serving now as ``stable``. The canary predictor leaves replica counts unset: KServe sizes
  a canary from its traffic share. The CRD requires ``model.name`` (the container name) inside a
  canary predictor, so it is set to KServe's default ``kserve-container``. Promotion is a render without ``canary_percent`` (the stable
  Deployment rolls to the candidate and ``spec.canary`` disappears); rollback is a render of the
  stable version without ``canary_percent``.

``canary_percent`` of 100 (or ``None``) means fully rolled out: no canary fields.

An unresolved version (``version=None``: the registry could not be asked, or an alias could not be
resolved) renders *without* any storage location: no ``storageUri``, no ``MODEL_URI``, and a version
label only when the manifest pins one. The objects stay reviewable in the diff, but they are not
deployable; the caller marks the plan as incomplete (see :func:`deployable`) rather than having a
placeholder URI slip into a cluster.

Output is deterministic: labels and env are sorted and every call builds fresh dicts, so
:func:`modelherd.yamldiff.to_yaml` of two renders of the same input is byte-identical.
"""

from __future__ import annotations

import re
from typing import Any

from modelherd.manifest import Deployment, Replicas, Resources, Runtime, Serving
from modelherd.registry import ModelVersionInfo

MANAGED_BY = "modelherd"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL = "modelherd.dev/model"
LABEL_ENVIRONMENT = "modelherd.dev/environment"
LABEL_VERSION = "modelherd.dev/version"
ANNOTATION_REGISTRY_MODEL = "modelherd.dev/registry-model"
ANNOTATION_SOURCE = "modelherd.dev/source"
ANNOTATION_RUN_ID = "modelherd.dev/run-id"
ANNOTATION_REPOSITORY = "modelherd.dev/repository"   # the forge repository whose manifests deployed it
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"      # set by NVIDIA GPU feature discovery

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER_NAME = "model"
KSERVE_CONTAINER_NAME = "kserve-container"        # KServe's own name for the predictor's model container
PORT_NAME = "http"
SERVICE_PORT = 80
DEFAULT_UTILIZATION = 80                           # HPA target when the manifest gives none (KServe's default)
RESERVED_ENV = ("MODEL_URI", "MODEL_NAME", "MODEL_VERSION")

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class RenderError(ValueError):
    """The deployment cannot be expressed as serving objects (e.g. a Standard-mode canary without a
    stable version); the message says why, for the plan."""


# ---------------------------------------------------------------------------------------------- API

def render(dep: Deployment, version: ModelVersionInfo | None, *, canary_percent: int | None = None,
           stable: ModelVersionInfo | None = None) -> list[dict[str, Any]]:
    """The serving objects for ``dep`` serving ``version``.

    ``canary_percent`` (0–100) sends that share of traffic to ``version``; 100 or ``None`` is a full
    rollout. ``stable`` is the version serving now, needed only for a KServe Standard-mode canary.
    Raises :class:`RenderError` when the combination cannot be rendered.
    """
    canary = _canary_share(canary_percent)
    if dep.serving.runtime is Runtime.KSERVE:
        return [_inference_service(dep, version, canary, stable)]
    if canary is not None:
        raise RenderError("runtime: deployment has no traffic splitting; a canary needs runtime: kserve")
    return _plain_objects(dep, version)


def deployable(version: ModelVersionInfo | None) -> bool:
    """Whether objects rendered for ``version`` carry a storage location (see the module notes)."""
    return version is not None and bool(version.storage_uri)


def sanitize_label_value(text: str) -> str:
    """``text`` as a valid label value: invalid characters become ``-``, at most 63 characters,
    starting and ending with a letter or digit (possibly empty)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def sanitize_label_key(key: str) -> str | None:
    """``key`` as a valid label key (``[prefix/]name``), or ``None`` when nothing valid is left."""
    prefix, _, name = key.rpartition("/")
    name = sanitize_label_value(name)
    if not name:
        return None
    if not prefix:
        return name
    prefix = re.sub(r"[^a-z0-9.-]+", "-", prefix.lower())
    prefix = ".".join(p.strip("-") for p in prefix.split(".") if p.strip("-"))[:253].strip(".-")
    return f"{prefix}/{name}" if prefix and _DNS_SUBDOMAIN.match(prefix) else name


def labels(dep: Deployment, version: ModelVersionInfo | None) -> dict[str, str]:
    """The labels every rendered object carries: the manifest's (sanitised) under modelherd's own,
    which always win."""
    out: dict[str, str] = {}
    for key, value in dep.labels.items():
        clean = sanitize_label_key(key)
        if clean is not None:
            out[clean] = sanitize_label_value(value)
    out.update({
        LABEL_NAME: dep.name,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MODEL: sanitize_label_value(dep.model.name),
        LABEL_ENVIRONMENT: dep.environment,
    })
    shown = _version_text(dep, version)
    if shown is not None:
        out[LABEL_VERSION] = sanitize_label_value(shown)
    return dict(sorted(out.items()))


def annotations(dep: Deployment, version: ModelVersionInfo | None) -> dict[str, str]:
    """Lineage annotations: the registry model and, when known, the version's source and run, and the
    repository that deploys it (``dep.repository``, set by the rollout engine: drift tells this
    repository's orphans from another's by it)."""
    out = {ANNOTATION_REGISTRY_MODEL: f"{dep.model.registry}/{dep.model.name}"}
    if dep.repository:
        out[ANNOTATION_REPOSITORY] = dep.repository
    if version is not None and version.source:
        out[ANNOTATION_SOURCE] = version.source
    if version is not None and version.run_id:
        out[ANNOTATION_RUN_ID] = version.run_id
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------ helpers

def _canary_share(percent: int | None) -> int | None:
    """The canary traffic share, or ``None`` for a full rollout (``None`` or 100)."""
    if percent is None or percent == 100:
        return None
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise RenderError(f"canary_percent must be an integer from 0 to 100, not {percent!r}")
    return percent


def _version_text(dep: Deployment, version: ModelVersionInfo | None) -> str | None:
    """The version shown in labels and env: the resolved one, else the manifest's pinned one."""
    if version is not None:
        return str(version.version)
    return str(dep.model.version) if dep.model.version is not None else None


def _storage_uri(version: ModelVersionInfo | None) -> str | None:
    """The version's artifact location; refuses a ``models:/`` URI, which no server can fetch."""
    uri = version.storage_uri if version is not None else None
    if uri and uri.startswith("models:/"):
        raise RenderError(f"{uri} is a registry URI; the renderer needs the artifact location behind it")
    return uri or None


def _metadata(dep: Deployment, version: ModelVersionInfo | None,
              extra_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """``metadata`` with name, namespace, labels and (lineage plus ``extra_annotations``) annotations."""
    notes = {**annotations(dep, version), **(extra_annotations or {})}
    return {"name": dep.name, "namespace": dep.namespace, "labels": labels(dep, version),
            "annotations": dict(sorted(notes.items()))}


def _resources(res: Resources) -> dict[str, dict[str, str]]:
    """Container ``resources``; a GPU count goes into both requests and limits (Kubernetes requires
    extended resources to be equal in both)."""
    requests = {k: v for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
    limits = {k: v for k, v in (("cpu", res.cpu_limit), ("memory", res.memory_limit)) if v}
    if res.gpu:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(res.gpu)
    out = {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}
    return {k: v for k, v in out.items() if v}


def _node_selector(res: Resources) -> dict[str, str]:
    """The GPU product node selector when ``gpu_type`` is set; refuses a value no node label can hold."""
    if not res.gpu_type:
        return {}
    if not _LABEL_VALUE.match(res.gpu_type):
        raise RenderError(f"gpu_type {res.gpu_type!r} is not a valid node label value "
                          f"(letters, digits, '-', '_', '.'; at most 63)")
    return {GPU_PRODUCT_LABEL: res.gpu_type}


# ------------------------------------------------------------------------------------------- KServe

def _inference_service(dep: Deployment, version: ModelVersionInfo | None, canary: int | None,
                       stable: ModelVersionInfo | None) -> dict[str, Any]:
    """The ``InferenceService`` for ``dep``, with the mode's canary fields when ``canary`` is set."""
    if not _DNS_1035.match(dep.name):
        raise RenderError(f"KServe needs the name to start with a letter (a DNS-1035 label): {dep.name!r}")
    mode = dep.serving.deployment_mode
    if canary is None:
        spec: dict[str, Any] = {"predictor": _predictor(dep.serving, version)}
    elif mode == "Knative":
        spec = {"predictor": {**_predictor(dep.serving, version), "canaryTrafficPercent": canary}}
    else:
        spec = _standard_canary(dep, version, canary, stable)
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": _metadata(dep, version, {ANNOTATION_DEPLOYMENT_MODE: mode}),
        "spec": spec,
    }


def _standard_canary(dep: Deployment, version: ModelVersionInfo | None, canary: int,
                     stable: ModelVersionInfo | None) -> dict[str, Any]:
    """``spec`` of a Standard-mode canary: the stable predictor plus one ``spec.canary[]`` entry."""
    if stable is None:
        raise RenderError("a canary in KServe Standard mode keeps the serving version as spec.predictor; "
                          "pass the version serving now as `stable` (or deploy directly)")
    if version is None:
        raise RenderError("a canary in KServe Standard mode needs the candidate version resolved")
    name = "v" + re.sub(r"[^a-z0-9]+", "-", str(version.version).lower()).strip("-")
    deployment_name = f"{dep.name}-{name}-predictor"
    if len(deployment_name) > 63:
        raise RenderError(f"the canary Deployment name {deployment_name!r} exceeds 63 characters; "
                          f"shorten metadata.name")
    candidate = {"name": name, **_predictor(dep.serving, version, scaling=False)}
    # unlike spec.predictor.model, the CRD requires the container name in a canary's model
    candidate["model"] = {"name": KSERVE_CONTAINER_NAME, **candidate["model"]}
    return {"canary": [{"predictor": candidate, "trafficPercent": canary}],
            "predictor": _predictor(dep.serving, stable)}


def _predictor(serving: Serving, version: ModelVersionInfo | None, *, scaling: bool = True) -> dict[str, Any]:
    """``spec.predictor``: the model (format, runtime, storage, protocol, resources) and, unless
    ``scaling`` is off, the replica and autoscaling fields."""
    model: dict[str, Any] = {"modelFormat": _model_format(serving)}
    uri = _storage_uri(version)
    optional = (("runtime", serving.serving_runtime), ("storageUri", uri), ("protocolVersion", serving.protocol))
    model.update({k: v for k, v in optional if v})
    resources = _resources(serving.resources)
    if resources:
        model["resources"] = resources
    predictor: dict[str, Any] = {"model": model}
    if scaling:
        predictor.update(_kserve_scaling(serving.replicas))
    node_selector = _node_selector(serving.resources)
    if node_selector:
        predictor["nodeSelector"] = node_selector
    if serving.timeout_seconds:
        predictor["timeout"] = serving.timeout_seconds
    return predictor


def _model_format(serving: Serving) -> dict[str, str]:
    """``modelFormat`` ``{name, version}``."""
    fmt = {"name": serving.format or ""}
    if serving.format_version:
        fmt["version"] = serving.format_version
    return fmt


def _kserve_scaling(replicas: Replicas) -> dict[str, Any]:
    """Component replica fields; without ``max`` the count is fixed (``maxReplicas`` = ``min``, at
    least 1, since KServe reads a ``maxReplicas`` of 0 as unbounded)."""
    out: dict[str, Any] = {"minReplicas": replicas.min,
                           "maxReplicas": replicas.max if replicas.max is not None else max(replicas.min, 1)}
    if replicas.scale_metric:
        out["scaleMetric"] = replicas.scale_metric
    if replicas.scale_target:
        out["scaleTarget"] = replicas.scale_target
    return out


# ------------------------------------------------------------------------ Deployment + Service (+HPA)

def _plain_objects(dep: Deployment, version: ModelVersionInfo | None) -> list[dict[str, Any]]:
    """Deployment and Service, and an HPA when the replica range allows scaling."""
    objects = [_deployment(dep, version), _service(dep, version)]
    if _autoscaled(dep.serving.replicas):
        objects.append(_hpa(dep, version))
    return objects


def _autoscaled(replicas: Replicas) -> bool:
    """An HPA is rendered when ``max`` is above ``min``."""
    return replicas.max is not None and replicas.max > replicas.min


def _selector(dep: Deployment) -> dict[str, str]:
    """Pod selector: only labels that never change for the deployment (selectors are immutable)."""
    return {LABEL_NAME: dep.name, LABEL_ENVIRONMENT: dep.environment}


def _deployment(dep: Deployment, version: ModelVersionInfo | None) -> dict[str, Any]:
    """The ``apps/v1`` Deployment. ``replicas`` is ``min`` unless an HPA owns the count: applying a
    fixed count on every deploy would undo the autoscaler's scale-up."""
    serving = dep.serving
    pod: dict[str, Any] = {"containers": [_container(dep, version)]}
    node_selector = _node_selector(serving.resources)
    if node_selector:
        pod["nodeSelector"] = node_selector
    spec: dict[str, Any] = {
        "selector": {"matchLabels": _selector(dep)},
        "template": {"metadata": {"labels": labels(dep, version)}, "spec": pod},
    }
    if not _autoscaled(serving.replicas):
        spec["replicas"] = serving.replicas.min
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(dep, version), "spec": spec}


def _container(dep: Deployment, version: ModelVersionInfo | None) -> dict[str, Any]:
    """The model server container: image, args, env, the named port, TCP probes on it, resources."""
    serving = dep.serving
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": serving.image}
    if serving.args:
        container["args"] = list(serving.args)
    container["env"] = _env(dep, version)
    container["ports"] = [{"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"}]
    container.update(_probes())
    resources = _resources(serving.resources)
    if resources:
        container["resources"] = resources
    return container


def _env(dep: Deployment, version: ModelVersionInfo | None) -> list[dict[str, str]]:
    """``MODEL_URI`` / ``MODEL_NAME`` / ``MODEL_VERSION`` (when known), then the manifest's env sorted
    by name; the manifest cannot override the three model variables."""
    ours = {"MODEL_NAME": dep.model.name, "MODEL_URI": _storage_uri(version),
            "MODEL_VERSION": _version_text(dep, version)}
    env = [{"name": k, "value": v} for k, v in sorted(ours.items()) if v is not None]
    env += [{"name": k, "value": v} for k, v in sorted(dep.serving.env.items()) if k not in RESERVED_ENV]
    return env


def _probes() -> dict[str, Any]:
    """TCP probes on the named port; the startup probe allows ten minutes for a model to load."""
    tcp = {"tcpSocket": {"port": PORT_NAME}}
    return {
        "livenessProbe": {**tcp, "periodSeconds": 20, "failureThreshold": 3},
        "readinessProbe": {**tcp, "periodSeconds": 10, "failureThreshold": 3},
        "startupProbe": {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10, "failureThreshold": 60},
    }


def _service(dep: Deployment, version: ModelVersionInfo | None) -> dict[str, Any]:
    """The ``v1`` ClusterIP Service: port 80 to the container's named port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(dep, version),
        "spec": {"type": "ClusterIP", "selector": _selector(dep),
                 "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]},
    }


def _hpa(dep: Deployment, version: ModelVersionInfo | None) -> dict[str, Any]:
    """The ``autoscaling/v2`` HPA on CPU or memory utilisation (``scale_target`` %, default 80)."""
    replicas = dep.serving.replicas
    metric = replicas.scale_metric or "cpu"
    if metric not in ("cpu", "memory"):
        raise RenderError(f"scale_metric {metric} needs KServe; runtime: deployment scales on cpu or memory")
    target = {"type": "Utilization", "averageUtilization": replicas.scale_target or DEFAULT_UTILIZATION}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(dep, version),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep.name},
            "minReplicas": max(replicas.min, 1),    # 0 needs the HPAScaleToZero feature gate
            "maxReplicas": replicas.max,
            "metrics": [{"type": "Resource", "resource": {"name": metric, "target": target}}],
        },
    }
