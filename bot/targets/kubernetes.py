"""The ``kubernetes`` target: server-side apply of the rendered objects, readiness from their status.

One :class:`KubernetesTarget` per cluster, each with its own ``kubernetes.client.ApiClient``;
:func:`clients_from_settings` builds them from the server's ``clusters`` settings, lazily, so a broken
kubeconfig for one cluster only fails the calls to that cluster.

**Which client API.** The typed APIs (``CustomObjectsApi`` for the ``InferenceService``;
``AppsV1Api`` / ``CoreV1Api`` / ``AutoscalingV2Api`` for Deployment, Service and HPA), called with
``_preload_content=False`` so responses are parsed as plain JSON dicts. Not the ``DynamicClient``:
it would first walk the discovery endpoints (``/api``, ``/apis``, every group) of every cluster, and
it returns ``ResourceInstance`` wrappers; the typed calls need one request per operation and give
dicts with every field the server sent (the typed models would drop unknown fields).

**Server-side apply with the official client.** Every generated ``patch_*`` method accepts
``_content_type``; with ``"application/apply-patch+yaml"`` the client's REST layer (``rest.py``)
treats the ``+yaml`` suffix as structured YAML and sends a ``dict`` body as JSON, which is valid YAML
1.2 — exactly what ``kubectl apply --server-side`` sends. ``field_manager="modelherd"`` and
``force=True`` go in the query. Note that ``patch_namespaced_custom_object`` defaults to
``application/merge-patch+json`` (the only type it lists), so the content type *must* be passed;
``api_client.set_default_header`` would not work (the per-call default wins).

**Readiness** (:func:`inference_service_health`, :func:`deployment_health`) is pure: it reads a live
object (a dict) and returns :class:`~modelherd.targets.Health`. Nothing from the ``kubernetes``
package leaves this module: callers see ``Health``, plain dicts and :class:`TargetError`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelherd.manifest import Deployment, Runtime
from modelherd.registry import ModelVersionInfo
from modelherd.render import (
    ANNOTATION_DEPLOYMENT_MODE,
    ANNOTATION_REPOSITORY,
    KSERVE_API_VERSION,
    LABEL_MANAGED_BY,
    LABEL_VERSION,
    MANAGED_BY,
    deployable,
    render,
    sanitize_label_value,
)
from modelherd.targets import Health, Readiness, TargetError

FIELD_MANAGER = "modelherd"
APPLY_PATCH = "application/apply-patch+yaml"
DEFAULT_TIMEOUT = (5.0, 30.0)       # (connect, read) seconds per request

# InferenceService status vocabulary (KServe)
FAILED_TRANSITIONS = frozenset({"BlockedByFailedLoad", "InvalidSpec"})
# Condition reasons after which a rollout will not become ready without a change
TERMINAL_REASONS = frozenset({
    "RevisionFailed", "ContainerMissing", "ProgressDeadlineExceeded", "InvalidPredictorSpec",
    "ModelLoadFailed", "RuntimeUnhealthy", "RuntimeDisabled", "NoSupportingRuntime", "RuntimeNotRecognized",
})
WATCHED_CONDITIONS = ("Ready", "PredictorReady", "PredictorConfigurationReady", "IngressReady")


class KubernetesApiError(TargetError):
    """The API server refused a request or could not be reached.

    ``status`` is the HTTP status (``None`` when the server was not reached), ``causes`` the
    ``details.causes`` of a 422 as ``"field: message"`` strings.
    """

    def __init__(self, message: str, *, cluster: str, kind: str, name: str, status: int | None = None,
                 causes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cluster, self.kind, self.name, self.status, self.causes = cluster, kind, name, status, causes


# ------------------------------------------------------------------------------------ resources

@dataclass(frozen=True)
class _Resource:
    """One kind the target manages and how the client reaches it.

    ``api`` names the typed API (an attribute of :class:`_Apis`) whose methods end in ``snake``;
    ``None`` means a custom resource served through ``CustomObjectsApi``.
    """

    api_version: str
    kind: str
    plural: str
    api: str | None = None
    snake: str = ""

    def call(self, apis: _Apis, verb: str, namespace: str, name: str, **kwargs: Any) -> Any:
        """Call ``read`` / ``patch`` / ``delete`` for one object, or ``list`` for the namespace's
        objects (``name`` unused); the raw response, not preloaded."""
        if verb == "list":
            if self.api is None:
                group, version = self.api_version.split("/")
                return apis.custom.list_namespaced_custom_object(group, version, namespace, self.plural, **kwargs)
            return getattr(getattr(apis, self.api), f"list_namespaced_{self.snake}")(namespace, **kwargs)
        if self.api is None:
            group, version = self.api_version.split("/")
            method = getattr(apis.custom, f"{'get' if verb == 'read' else verb}_namespaced_custom_object")
            return method(group, version, namespace, self.plural, name, **kwargs)
        method = getattr(getattr(apis, self.api), f"{verb}_namespaced_{self.snake}")
        return method(name, namespace, **kwargs)


INFERENCE_SERVICE = _Resource(KSERVE_API_VERSION, "InferenceService", "inferenceservices")
DEPLOYMENT = _Resource("apps/v1", "Deployment", "deployments", "apps", "deployment")
SERVICE = _Resource("v1", "Service", "services", "core", "service")
HPA = _Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "autoscaling",
                "horizontal_pod_autoscaler")
RESOURCES = {(r.api_version, r.kind): r for r in (INFERENCE_SERVICE, DEPLOYMENT, SERVICE, HPA)}
RUNTIME_RESOURCES = {Runtime.KSERVE: (INFERENCE_SERVICE,), Runtime.DEPLOYMENT: (DEPLOYMENT, SERVICE, HPA)}


class _Apis:
    """The typed API objects over one ``ApiClient``."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)


# --------------------------------------------------------------------------------------- target

class KubernetesTarget:
    """Serves deployments on one Kubernetes cluster (see the module notes).

    ``api_client``: a ``kubernetes.client.ApiClient``, or a zero-argument callable returning one
    (called on first use, and again after it failed). ``timeout``: ``(connect, read)`` seconds for
    each request.
    """

    kind = "kubernetes"

    def __init__(self, cluster_name: str, api_client: Any | Callable[[], Any], *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.cluster = cluster_name
        self.timeout = timeout
        self._factory = api_client if callable(api_client) else None
        self._apis = None if self._factory is not None else _Apis(api_client)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KubernetesTarget({self.cluster!r})"

    # -- Target protocol ------------------------------------------------------------------------

    def apply(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None,
              stable: ModelVersionInfo | None = None) -> None:
        """Server-side apply the objects rendered for ``version``; delete a stale HPA of ours.

        Raises :class:`~modelherd.render.RenderError` when the combination cannot be rendered and
        :class:`TargetError` when the cluster refuses or cannot be reached.
        """
        if not deployable(version):
            raise TargetError(f"cluster {self.cluster}: refusing to apply {dep.name} "
                              f"({dep.environment}): the version has no storage location")
        objects = render(dep, version, canary_percent=canary_percent, stable=stable)
        for obj in objects:
            self.apply_object(obj)
        rendered = {(o["apiVersion"], o["kind"]) for o in objects}
        for resource in RUNTIME_RESOURCES[dep.serving.runtime]:
            if (resource.api_version, resource.kind) not in rendered:
                self._delete_if_ours(resource, dep.namespace, dep.name)

    def health(self, dep: Deployment, version: ModelVersionInfo, *,
               canary_percent: int | None = None) -> Health:
        """Whether ``version`` serves with ``canary_percent`` of traffic (see the readiness notes)."""
        if dep.serving.runtime is Runtime.KSERVE:
            obj = self._read(INFERENCE_SERVICE, dep.namespace, dep.name)
            return inference_service_health(obj, version, canary_percent=canary_percent,
                                            mode=dep.serving.deployment_mode)
        obj = self._read(DEPLOYMENT, dep.namespace, dep.name)
        health = deployment_health(obj, version)
        if health.state is Readiness.READY and self._read(SERVICE, dep.namespace, dep.name) is None:
            return Health(Readiness.PROGRESSING, f"Service {dep.namespace}/{dep.name} is not there (yet)", health.details)
        return health

    def live(self, dep: Deployment) -> list[dict[str, Any]] | None:
        """The live objects of ``dep``'s runtime (as the API returns them), or None when there are none."""
        found = [self._read(r, dep.namespace, dep.name) for r in RUNTIME_RESOURCES[dep.serving.runtime]]
        objects = [obj for obj in found if obj is not None]
        return objects or None

    def managed(self, namespace: str) -> list[dict[str, Any]]:
        """Every object of the four kinds in ``namespace`` labelled ``managed-by: modelherd``: one list
        call per kind, whatever the number of models (:class:`~modelherd.targets.ListsManaged`).

        List items of built-in kinds carry no ``apiVersion`` / ``kind`` on the wire; they are filled
        in. A cluster without the KServe CRD (404 on the InferenceService list) has none of those."""
        found: list[dict[str, Any]] = []
        selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        for resource in (INFERENCE_SERVICE, DEPLOYMENT, SERVICE, HPA):
            try:
                listed = _json(self._call("list", resource, namespace, "", "list", label_selector=selector))
            except KubernetesApiError as error:
                if error.status == 404 and resource is INFERENCE_SERVICE:
                    continue
                raise
            found += [{**item, "apiVersion": resource.api_version, "kind": resource.kind}
                      for item in listed.get("items") or () if isinstance(item, dict)]
        return found

    def remove(self, dep: Deployment) -> None:
        """Delete the objects modelherd manages for ``dep`` (any runtime); absent ones are fine.
        Objects of the same name that modelherd does not manage are left alone."""
        for resource in (INFERENCE_SERVICE, DEPLOYMENT, SERVICE, HPA):
            self._delete_if_ours(resource, dep.namespace, dep.name)

    def absent(self, dep: Deployment) -> Health:
        """READY once no object modelherd manages for ``dep`` is left (any runtime); objects of the same
        name that modelherd does not manage do not count (``remove`` leaves them alone)."""
        left = []
        for resource in (INFERENCE_SERVICE, DEPLOYMENT, SERVICE, HPA):
            obj = self._read(resource, dep.namespace, dep.name)
            if obj is not None and _managed(obj):
                deleting = " (being deleted)" if (obj.get("metadata") or {}).get("deletionTimestamp") else ""
                left.append(f"{resource.kind} {dep.namespace}/{dep.name}{deleting}")
        if left:
            return Health(Readiness.PROGRESSING, f"still there: {', '.join(left)}", {"left": left})
        return Health(Readiness.READY, f"absent: nothing of {dep.name} left in {self.cluster} namespace "
                                       f"{dep.namespace}", {"left": []})

    # -- object-level operations ---------------------------------------------------------------

    def apply_object(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply one rendered object (field manager ``modelherd``, forced); the live result.

        A forced apply would take over any object of that name, so an existing object modelherd does not
        manage (no managed-by label: made by hand or by another tool), or one another repository deployed,
        is refused with :class:`TargetError` and left as it is."""
        resource = _resource_of(obj)
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        self._refuse_takeover(resource, obj, self._read(resource, namespace, name))
        response = self._call("apply", resource, namespace, name, "patch", body=dict(obj),
                              field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)
        return _json(response)

    def get_object(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One live object as a dict, or None when it does not exist."""
        return self._read(_resource_of({"apiVersion": api_version, "kind": kind}), namespace, name)

    def close(self) -> None:
        """Release the client's connections (when it was built)."""
        if self._apis is not None:
            self._apis.api_client.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _read(self, resource: _Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """GET one object; None on 404."""
        try:
            return _json(self._call("read", resource, namespace, name, "read"))
        except KubernetesApiError as error:
            if error.status == 404:
                return None
            raise

    def _refuse_takeover(self, resource: _Resource, obj: Mapping[str, Any], live: Mapping[str, Any] | None) -> None:
        if live is None:
            return
        meta = obj.get("metadata") or {}
        where = f"cluster {self.cluster}: {resource.kind} {meta.get('namespace')}/{meta.get('name')}"
        if not _managed(live):
            raise TargetError(f"{where} exists and is not managed by modelherd (no label "
                              f"{LABEL_MANAGED_BY}={MANAGED_BY}): refusing to take it over; delete or rename it, "
                              "or label it to hand it to modelherd")
        owner = (live.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_REPOSITORY)
        ours = (meta.get("annotations") or {}).get(ANNOTATION_REPOSITORY)
        if owner and ours and owner != ours:
            raise TargetError(f"{where} was deployed by the repository {owner}, not {ours}: refusing to take it "
                              "over; one model name per namespace and cluster")

    def _delete_if_ours(self, resource: _Resource, namespace: str, name: str) -> None:
        """DELETE the object when it exists and carries modelherd's managed-by label."""
        obj = self._read(resource, namespace, name)
        if obj is None or not _managed(obj):
            return
        try:
            self._call("delete", resource, namespace, name, "delete", propagation_policy="Background")
        except KubernetesApiError as error:
            if error.status != 404:
                raise

    def _call(self, action: str, resource: _Resource, namespace: str, name: str, verb: str,
              **kwargs: Any) -> Any:
        """One API call with the target's timeout; every failure becomes a :class:`KubernetesApiError`."""
        apis = self._client(resource, name)
        try:
            return resource.call(apis, verb, namespace, name, _preload_content=False,
                                 _request_timeout=self.timeout, **kwargs)
        except Exception as exc:  # the client raises ApiException, urllib3 and socket errors
            raise self._error(exc, action, resource, namespace, name) from exc

    def _client(self, resource: _Resource, name: str) -> _Apis:
        """The API objects, building the client on first use (errors name the cluster)."""
        if self._apis is not None:
            return self._apis
        with self._lock:
            if self._apis is None:
                try:
                    self._apis = _Apis(self._factory())
                except TargetError:
                    raise
                except Exception as exc:
                    raise KubernetesApiError(f"cluster {self.cluster}: cannot build a client: {_one_line(exc)}",
                                             cluster=self.cluster, kind=resource.kind, name=name) from exc
            return self._apis

    def _error(self, exc: Exception, action: str, resource: _Resource, namespace: str,
               name: str) -> KubernetesApiError:
        """A readable error for ``exc`` naming the cluster, kind and object, with the API's message."""
        where = f"cluster {self.cluster}: {action} {resource.kind} {namespace}/{name}" if name else \
            f"cluster {self.cluster}: {action} {resource.kind} in {namespace}"
        status = getattr(exc, "status", None)
        if isinstance(status, int) and status > 0:
            message, causes = _status_message(getattr(exc, "body", None), getattr(exc, "reason", None))
            text = f"{where}: HTTP {status}: {message}"
            if causes:
                text += " (" + "; ".join(causes) + ")"
            return KubernetesApiError(text, cluster=self.cluster, kind=resource.kind, name=name,
                                      status=status, causes=causes)
        return KubernetesApiError(f"{where}: API server unreachable: {_unreachable_reason(exc)}",
                                  cluster=self.cluster, kind=resource.kind, name=name)


def _managed(obj: Mapping[str, Any]) -> bool:
    """The object carries modelherd's managed-by label."""
    return (obj.get("metadata", {}).get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY


def _resource_of(obj: Mapping[str, Any]) -> _Resource:
    """The managed kind of ``obj``; other kinds are a programming error."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in RESOURCES:
        raise ValueError(f"the kubernetes target does not manage {key[1]} ({key[0]})")
    return RESOURCES[key]


def _json(response: Any) -> dict[str, Any]:
    """The JSON body of a raw (urllib3) response."""
    try:
        data = response.data
    finally:
        response.release_conn()
    return json.loads(data) if data else {}


def _status_message(body: Any, reason: Any) -> tuple[str, tuple[str, ...]]:
    """The message and ``details.causes`` of a Kubernetes ``Status`` body (or the raw text)."""
    try:
        status = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        status = None
    if not isinstance(status, dict):
        text = body.decode(errors="replace") if isinstance(body, bytes) else (body or reason or "")
        return _one_line(str(text))[:500] or "no message", ()
    causes = tuple(
        f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
        for c in (status.get("details") or {}).get("causes") or () if isinstance(c, dict))
    return status.get("message") or status.get("reason") or str(reason or ""), causes


def _unreachable_reason(exc: Exception) -> str:
    """The root cause of a connection failure (urllib3 wraps it in ``MaxRetryError``)."""
    reason = getattr(exc, "reason", None) or exc
    return _one_line(str(reason))[:300] or type(exc).__name__


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------- client setup

def clients_from_settings(settings: Any, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                          retries: int = 1) -> dict[str, KubernetesTarget]:
    """One :class:`KubernetesTarget` per configured cluster (``settings.clusters``).

    Clients are built on each target's first call, so an unreadable kubeconfig fails only that
    cluster's calls (with a :class:`TargetError` naming it). ``retries`` bounds urllib3's connect
    retries, so an unreachable cluster fails within about ``(retries + 1) * connect timeout``.
    """
    return {name: KubernetesTarget(name, _client_factory(name, cluster, retries), timeout=timeout)
            for name, cluster in settings.clusters.items()}


def _client_factory(name: str, cluster: Any, retries: int) -> Callable[[], Any]:
    """A callable building the ``ApiClient`` for ``cluster`` (kubeconfig + context, or in-cluster)."""

    def build() -> Any:
        from kubernetes import client, config
        from urllib3.util.retry import Retry

        configuration = client.Configuration()
        configuration.retries = Retry(total=retries, connect=retries, read=0, redirect=0, status=0,
                                      backoff_factor=0.2)
        try:
            if cluster.in_cluster:
                config.load_incluster_config(client_configuration=configuration)
                return client.ApiClient(configuration)
            return config.new_client_from_config(config_file=cluster.kubeconfig, context=cluster.context,
                                                 persist_config=False, client_configuration=configuration)
        except Exception as exc:  # ConfigException, OSError, YAML and type errors from a broken file
            source = "in-cluster config" if cluster.in_cluster else \
                f"kubeconfig {cluster.kubeconfig or '(default)'}" + \
                (f" context {cluster.context}" if cluster.context else "")
            raise TargetError(f"cluster {name}: cannot load {source}: {_one_line(exc)}") from exc

    return build


# ------------------------------------------------------------------------------------ readiness

def inference_service_health(obj: Mapping[str, Any] | None, version: ModelVersionInfo, *,
                             canary_percent: int | None = None, mode: str | None = None) -> Health:
    """Readiness of a live ``InferenceService`` for ``version`` at ``canary_percent``.

    READY: the object carries the version, KServe observed its generation, ``Ready`` is True,
    ``modelStatus.transitionStatus`` is ``UpToDate`` and the traffic split is in place (Knative:
    ``components.predictor.traffic``; Standard: ``status.canaryStatuses`` or ``CanaryPredictorReady``).
    FAILED: a failed load or invalid spec, or a watched condition False for a terminal reason.
    PROGRESSING otherwise — including an object that does not carry what was asked for (yet): the
    rollout engine asks for a step's health after a crash to learn whether its apply arrived, so "not
    applied" must never read as FAILED; a step that never gets there fails by its timeout.
    """
    if obj is None:
        return Health(Readiness.PROGRESSING, "InferenceService not found (not applied yet, or deleted)")
    canary = None if canary_percent in (None, 100) else canary_percent
    mode = mode or (obj.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_DEPLOYMENT_MODE) or "Standard"
    status = obj.get("status") or {}
    details = _isvc_details(obj, status)
    for check in (_version_check, _spec_check, _generation_check, _failure_check, _ready_check, _traffic_check):
        verdict = check(obj, status, version, canary, mode)
        if verdict is not None:
            return Health(verdict[0], verdict[1], details)
    split = f" with {canary}% of traffic" if canary is not None else ""
    return Health(Readiness.READY, f"InferenceService {_name(obj)} serves version {version.version}{split}",
                  details)


_Verdict = tuple[Readiness, str] | None


def _version_check(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                   canary: int | None, mode: str) -> _Verdict:
    """The object must carry ``version`` in its ``modelherd.dev/version`` label."""
    live = (obj.get("metadata", {}).get("labels") or {}).get(LABEL_VERSION)
    wanted = sanitize_label_value(str(version.version))
    if live != wanted:
        return Readiness.PROGRESSING, (f"{obj.get('kind', 'object')} {_name(obj)} carries version {live!r}, "
                                       f"not {wanted!r}: not applied yet, or changed after the apply")
    return None


def _spec_check(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                canary: int | None, mode: str) -> _Verdict:
    """The live spec must still ask for the traffic split that was applied."""
    spec = obj.get("spec") or {}
    if mode == "Knative":
        live = (spec.get("predictor") or {}).get("canaryTrafficPercent")
        live = None if live == 100 else live
        if live != canary:
            return Readiness.PROGRESSING, (f"spec.predictor.canaryTrafficPercent is {live}, not {canary}: "
                                           f"not applied yet, or changed after the apply")
        return None
    stale = bool(spec.get("canary")) if canary is None else _standard_candidate(obj, version, canary) is None
    if stale:
        return Readiness.PROGRESSING, (f"spec.canary does not hold version {version.version} at {canary}%: "
                                       f"not applied yet, or changed after the apply")
    return None


def _generation_check(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                      canary: int | None, mode: str) -> _Verdict:
    """KServe must have observed the applied generation (when it reports one) and written a status."""
    if not status:
        return Readiness.PROGRESSING, "waiting for KServe to report a status"
    generation, observed = obj.get("metadata", {}).get("generation"), status.get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return Readiness.PROGRESSING, f"waiting for KServe to observe generation {generation} (at {observed})"
    return None


def _failure_check(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                   canary: int | None, mode: str) -> _Verdict:
    """A failed load or invalid spec (the predictor's or the canary's), or a terminal condition."""
    model_statuses = [status.get("modelStatus") or {}]
    candidate = _standard_candidate(obj, version, canary) if mode != "Knative" else None
    if candidate is not None:
        model_statuses.append(_canary_status(status, candidate).get("modelStatus") or {})
    for model_status in model_statuses:
        if model_status.get("transitionStatus") in FAILED_TRANSITIONS:
            return Readiness.FAILED, _failure_text(model_status)
    model_status = model_statuses[0]
    failure = model_status.get("lastFailureInfo")
    predictor = (status.get("components") or {}).get("predictor") or {}
    latest = predictor.get("latestCreatedRevision")
    if failure and model_status.get("transitionStatus") != "UpToDate" and latest \
            and failure.get("modelRevisionName") == latest and predictor.get("latestReadyRevision") != latest:
        return Readiness.FAILED, _failure_text(model_status)
    for condition in _conditions(status).values():
        if condition.get("status") == "False" and condition.get("reason") in TERMINAL_REASONS:
            return Readiness.FAILED, _condition_text(condition)
    return None


def _ready_check(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                 canary: int | None, mode: str) -> _Verdict:
    """``Ready`` True and ``modelStatus.transitionStatus`` UpToDate."""
    ready = _conditions(status).get("Ready")
    if ready is None or ready.get("status") != "True":
        return Readiness.PROGRESSING, "not ready yet" + (f": {_condition_text(ready)}" if ready else "")
    transition = (status.get("modelStatus") or {}).get("transitionStatus")
    if transition != "UpToDate":
        return Readiness.PROGRESSING, f"model transition is {transition or 'not reported yet'}"
    return None


def _traffic_check(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                   canary: int | None, mode: str) -> _Verdict:
    """The traffic split must show the candidate's share."""
    if mode == "Knative":
        return _knative_traffic(status, canary)
    return _standard_traffic(obj, status, version, canary)


def _knative_traffic(status: Mapping[str, Any], canary: int | None) -> _Verdict:
    """Knative: the latest revision is ready and takes ``canary``% (100% when fully rolled out).
    On a first rollout there is no previous revision, so the latest takes everything."""
    predictor = (status.get("components") or {}).get("predictor") or {}
    traffic = [t for t in predictor.get("traffic") or () if isinstance(t, dict)]
    latest_ready, latest_created = predictor.get("latestReadyRevision"), predictor.get("latestCreatedRevision")
    if latest_created and latest_ready != latest_created:
        return Readiness.PROGRESSING, f"revision {latest_created} is not ready yet"
    if not traffic:
        return None if canary is None else (Readiness.PROGRESSING, "no traffic split reported yet")
    latest = [t for t in traffic if t.get("latestRevision")
              and (latest_created is None or t.get("revisionName") in (None, latest_created))]
    share = sum(int(t.get("percent") or 0) for t in latest)
    wanted = 100 if canary is None or len(latest) == len(traffic) else canary
    if share != wanted:
        return Readiness.PROGRESSING, f"the latest revision takes {share}% of traffic, waiting for {wanted}%"
    return None


def _standard_traffic(obj: Mapping[str, Any], status: Mapping[str, Any], version: ModelVersionInfo,
                      canary: int | None) -> _Verdict:
    """Standard: the canary predictor is ready at its share (``canaryStatuses``, else the
    ``CanaryPredictorReady`` condition); fully rolled out, no canary takes traffic."""
    statuses = [s for s in status.get("canaryStatuses") or () if isinstance(s, dict)]
    if canary is None:
        busy = [s for s in statuses if int(s.get("trafficPercent") or 0) > 0]
        if busy:
            return Readiness.PROGRESSING, f"canary {busy[0].get('name')} still takes {busy[0].get('trafficPercent')}%"
        return None
    candidate = _standard_candidate(obj, version, canary) or ""
    if statuses:
        entry = _canary_status(status, candidate)
        if not entry.get("ready") or entry.get("trafficPercent") != canary:
            return Readiness.PROGRESSING, (f"canary {candidate} is not ready at {canary}% yet "
                                           f"(ready={entry.get('ready')}, {entry.get('trafficPercent')}%)")
        return None
    condition = _conditions(status).get("CanaryPredictorReady")
    if condition is None or condition.get("status") != "True":
        return Readiness.PROGRESSING, "canary predictor not ready yet" + (
            f": {_condition_text(condition)}" if condition else "")
    return None


def _standard_candidate(obj: Mapping[str, Any], version: ModelVersionInfo, canary: int | None) -> str | None:
    """The name of the ``spec.canary[]`` predictor serving ``version`` at ``canary``%, if any."""
    if canary is None:
        return None
    for item in (obj.get("spec") or {}).get("canary") or ():
        predictor = item.get("predictor") or {}
        if item.get("trafficPercent") == canary and \
                (predictor.get("model") or {}).get("storageUri") == version.storage_uri:
            return predictor.get("name") or ""
    return None


def _canary_status(status: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``status.canaryStatuses`` entry of canary ``name`` ({} when absent)."""
    for entry in status.get("canaryStatuses") or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return {}


def _conditions(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Conditions by type."""
    return {c["type"]: c for c in status.get("conditions") or () if isinstance(c, dict) and "type" in c}


def _failure_text(model_status: Mapping[str, Any]) -> str:
    """``transitionStatus`` with ``lastFailureInfo``'s reason and message."""
    failure = model_status.get("lastFailureInfo") or {}
    text = str(model_status.get("transitionStatus") or "failed")
    reason, message = failure.get("reason"), failure.get("message")
    if reason:
        text += f": {reason}"
    if message:
        text += f": {message}"
    return text


def _condition_text(condition: Mapping[str, Any]) -> str:
    """``Type=Status (reason): message``."""
    text = f"{condition.get('type')}={condition.get('status')}"
    if condition.get("reason"):
        text += f" ({condition['reason']})"
    if condition.get("message"):
        text += f": {condition['message']}"
    return text


def _isvc_details(obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """Plain facts for the rollout's record."""
    predictor = (status.get("components") or {}).get("predictor") or {}
    model_status = status.get("modelStatus") or {}
    return {
        "kind": "InferenceService", "name": _name(obj),
        "generation": obj.get("metadata", {}).get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "transitionStatus": model_status.get("transitionStatus"),
        "lastFailureInfo": dict(model_status.get("lastFailureInfo") or {}) or None,
        "conditions": {t: c.get("status") for t, c in _conditions(status).items()},
        "traffic": [dict(t) for t in predictor.get("traffic") or ()],
        "canaryStatuses": [{k: v for k, v in s.items() if k != "modelStatus"}
                           for s in status.get("canaryStatuses") or ()],
        "url": status.get("url"),
    }


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def deployment_health(obj: Mapping[str, Any] | None, version: ModelVersionInfo) -> Health:
    """Readiness of a live ``apps/v1`` Deployment for ``version``, as ``kubectl rollout status`` reads it:
    observed generation, updated / total / available replicas, and ``ProgressDeadlineExceeded``."""
    if obj is None:
        return Health(Readiness.PROGRESSING, "Deployment not found (not applied yet, or deleted)")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    wanted = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    details = {"kind": "Deployment", "name": _name(obj), "generation": obj.get("metadata", {}).get("generation"),
               "observedGeneration": status.get("observedGeneration"), "replicas": wanted,
               "updatedReplicas": updated, "availableReplicas": available,
               "conditions": {t: c.get("status") for t, c in _conditions(status).items()}}
    verdict = _version_check(obj, status, version, None, "")
    if verdict is not None:
        return Health(verdict[0], verdict[1], details)
    generation = obj.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return Health(Readiness.PROGRESSING, "waiting for the deployment spec update to be observed", details)
    progressing = _conditions(status).get("Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(Readiness.FAILED, f"Deployment {_name(obj)} exceeded its progress deadline: "
                                        f"{progressing.get('message') or 'no message'}", details)
    for waiting, text in _rollout_waits(wanted, updated, total, available):
        if waiting:
            return Health(Readiness.PROGRESSING, text, details)
    return Health(Readiness.READY, f"Deployment {_name(obj)} serves version {version.version} "
                                   f"({available} available)", details)


def _rollout_waits(wanted: int, updated: int, total: int, available: int) -> Iterable[tuple[bool, str]]:
    """``kubectl rollout status``'s waits, in its order."""
    yield updated < wanted, f"{updated} of {wanted} new replicas have been updated"
    yield total > updated, f"{total - updated} old replicas are pending termination"
    yield available < updated, f"{available} of {updated} updated replicas are available"
