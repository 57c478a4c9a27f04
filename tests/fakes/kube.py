"""A fake Kubernetes API server over real HTTP, for driving the official ``kubernetes`` client.

    with FakeKube() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        fake.behave("ml", "fraud", "ready", after=2)      # Ready on the third status poll
        ...                                               # the code under test applies and polls
        fake.assert_clean()

It serves what :mod:`modelherd.targets.kubernetes` uses, for ``serving.kserve.io/v1beta1``
InferenceServices, ``apps/v1`` Deployments, ``v1`` Services and ``autoscaling/v2`` HPAs:

* ``GET`` one object (404 ``Status`` when absent); no discovery endpoints are needed, since the
  target calls the typed and custom-object APIs directly.
* server-side apply: ``PATCH`` with ``Content-Type: application/apply-patch+yaml``,
  ``fieldManager=modelherd`` and ``force=true``; creates a missing object. The applied object
  replaces the manager's previous fields (fields it stops sending disappear; fields set by others
  through :meth:`FakeKube.edit` stay unless the apply takes them over). ``metadata.generation``
  increments when anything outside ``metadata`` and ``status`` changes; ``resourceVersion``
  increments on every write that changes the object (a no-op apply, like on a real server, leaves
  it). ``managedFields`` are omitted.
* ``DELETE`` (404 when absent).
* ``GET`` a collection (list) in one namespace, with an equality-based ``labelSelector``
  (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, comma-separated; set-based selectors are a violation).
  As a real API server does, the items of a built-in kind's list carry no ``apiVersion`` / ``kind``
  (custom resources' items do); a list is not counted as a status poll.

**Every body is validated**: InferenceServices against the KServe CRD
(:func:`tests.kube_schemas.validate_inferenceservice`), the others with
:func:`tests.kube_schemas.validate_builtin`; also the apply content type, ``fieldManager``,
``force``, that ``apiVersion`` / ``kind`` / name / namespace match the URL and that no ``status`` is
applied. A failing request is answered 422 with a Kubernetes ``Status`` (``details.causes``) and
recorded in ``fake.violations``; so is a request for anything the fake does not serve. The statuses
the fake itself writes are validated too (``fake.fake_errors``), so scenarios stay schema-true.

**Scenarios** per object (:meth:`FakeKube.behave`), counted in status polls (GETs) since the last
change of the object's spec. Until ``after`` polls have passed the rollout is in progress — and the
first of them still shows the *previous* status with the previous ``observedGeneration``, as a
controller that has not caught up would — then:

* ``ready``: InferenceService ``Ready``/``UpToDate`` for the applied spec, with the canary's traffic
  split (Knative: ``components.predictor.traffic``, which moves one poll after the revision became
  ready, as a route lags its configuration; Standard: ``canaryStatuses`` and
  ``CanaryPredictorReady``); Deployment fully rolled out.
* ``fail-load``: ``BlockedByFailedLoad`` with ``lastFailureInfo`` (for a Standard canary, in the
  canary's status); ``invalid``: ``InvalidSpec``; ``hang``: stays ``InProgress``.
* Deployments: ``ready``, ``progress-deadline-exceeded``, ``hang``.
* ``reject``: every apply of the object is refused with 422 and ``message`` (an admission webhook).

The default is ``ready`` after 1 poll. Faults: :meth:`FakeKube.fail_next` answers the next
requests with an error status. ``fake.token`` is required as the bearer token (401 otherwise).
``fake.calls`` records method, path, query, content type, status, body and response of every request.

Pytest: ``fake_kube`` (one started fake; teardown fails on violations) and ``fake_kube_factory``
(start as many as a test needs, one per cluster). Use them by importing them into a test module or
listing ``"tests.fakes.kube"`` in ``pytest_plugins``.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.wrappers import Request, Response

from tests.fakes.http import LocalServer
from tests.kube_schemas import validate_builtin, validate_inferenceservice

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "modelherd"
KSERVE = "serving.kserve.io/v1beta1"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
ISVC_MODES = ("ready", "fail-load", "hang", "invalid", "reject")
DEPLOYMENT_MODES = ("ready", "progress-deadline-exceeded", "hang", "reject")

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")
_SELECTOR_TERM = re.compile(r"^(?P<not>!)?(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)"
                            r"(?:(?P<op>==|!=|=)(?P<value>[-A-Za-z0-9_.]*))?$")


@dataclass(frozen=True)
class Kind:
    """A served resource type."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """``plural.group`` as the API server names it in messages (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS = {k.plural: k for k in (Kind(KSERVE, "InferenceService", "inferenceservices"),
                               Kind("apps/v1", "Deployment", "deployments"),
                               Kind("v1", "Service", "services"),
                               Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"))}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    status: int = 0
    body: Any = None          # the request's (parsed apply body)
    response: Any = None


@dataclass
class Scenario:
    mode: str = "ready"
    after: int = 1
    message: str = ""
    version: str | None = None      # only while the object carries this modelherd.dev/version label


@dataclass
class Stored:
    """One object: the manager's applied fields, others' fields, server fields and rollout state."""

    kind: Kind
    namespace: str
    name: str
    uid: str
    created: str
    applied: dict[str, Any] = field(default_factory=dict)
    others: dict[str, Any] = field(default_factory=dict)
    generation: int = 1
    resource_version: int = 0
    polls: int = 0
    shown_status: dict[str, Any] | None = None    # what the last poll showed
    stale_status: dict[str, Any] | None = None    # the status as it was before the last spec change
    revision: int = 0                             # Knative revisions created
    ready_revision: str | None = None
    rolled_out: str | None = None
    previous_rolled_out: str | None = None
    route: tuple[str, int | None] | None = None   # (revision, canary %) the Knative route has reached
    shown_traffic: list[dict[str, Any]] | None = None

    def composed(self) -> dict[str, Any]:
        """The object as stored: others' fields under the manager's, plus server metadata."""
        obj = _merge(copy.deepcopy(self.others), copy.deepcopy(self.applied))
        obj["apiVersion"], obj["kind"] = self.kind.api_version, self.kind.kind
        meta = obj.setdefault("metadata", {})
        meta.update({"name": self.name, "namespace": self.namespace, "uid": self.uid,
                     "resourceVersion": str(self.resource_version), "generation": self.generation,
                     "creationTimestamp": self.created})
        return obj

    @property
    def latest_revision(self) -> str:
        return f"{self.name}-predictor-{self.revision:05d}"


class ApiError(Exception):
    """Answered as a Kubernetes ``Status``."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> dict[str, Any]:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


# ==================================================================================================


class FakeKube(LocalServer):
    """One cluster's API server on 127.0.0.1 (see the module notes)."""

    def __init__(self, name: str = "fake", *, token: str | None = None) -> None:
        self.name = name
        self.token = token or f"token-{uuid.uuid4().hex[:12]}"
        self.objects: dict[tuple[str, str, str], Stored] = {}        # (plural, namespace, name)
        self.scenarios: dict[tuple[str | None, str, str], Scenario] = {}
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.fake_errors: list[str] = []
        self.faults: list[tuple[int, str, str | None]] = []         # (code, message, method)
        self.lock = threading.RLock()
        self._revision = itertools.count(1)
        self.url = ""

    # -- lifecycle (start/stop: LocalServer) ------------------------------------------------------

    @property
    def thread_name(self) -> str:
        return f"fake-kube-{self.name}"

    # -- test-side helpers ------------------------------------------------------------------------

    def write_kubeconfig(self, path: str | Path, *, context: str | None = None, token: str | None = None) -> Path:
        """A kubeconfig for this server (one context, named after the fake unless given)."""
        return write_kubeconfig(path, {context or self.name: self}, tokens={context or self.name: token})

    def behave(self, namespace: str, name: str, mode: str, *, after: int = 1, kind: str | None = None,
               message: str = "", version: str | None = None) -> None:
        """How the object ``namespace/name`` (of ``kind``, or any kind) rolls out from now on; with
        ``version``, only while it carries that version (a bad model version fails, the old one loads)."""
        if mode not in set(ISVC_MODES) | set(DEPLOYMENT_MODES):
            raise ValueError(f"unknown scenario {mode!r}")
        with self.lock:
            self.scenarios[(kind, namespace, name)] = Scenario(mode, after, message, version)
            for stored in self.objects.values():
                if (stored.namespace, stored.name) == (namespace, name) and kind in (None, stored.kind.kind):
                    stored.polls = 0

    def fail_next(self, code: int = 500, message: str = "etcdserver: request timed out", *, times: int = 1,
                  method: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``method``, or any) with ``code``."""
        with self.lock:
            self.faults.extend([(code, message, method)] * times)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (without status; not counted as a poll), or None."""
        with self.lock:
            stored = self.objects.get((_plural(kind), namespace, name))
            return stored.composed() if stored else None

    def create(self, obj: Mapping[str, Any]) -> None:
        """Another actor (``kubectl create``) creates ``obj``: validated like an apply, owned by others."""
        kind = KINDS[_plural(obj["kind"])]
        meta = obj.get("metadata") or {}
        body = copy.deepcopy(dict(obj))
        validate = validate_inferenceservice if kind.kind == "InferenceService" else validate_builtin
        problems = _identity_problems(kind, meta.get("namespace"), meta.get("name"), body) + \
            [("<body>", e) for e in validate(body)]
        assert not problems, f"FakeKube.create: {problems}"
        with self.lock:
            key = (kind.plural, meta["namespace"], meta["name"])
            assert key not in self.objects, f"FakeKube.create: {key} exists"
            stored = Stored(kind, meta["namespace"], meta["name"], str(uuid.uuid4()), _now(), others=body)
            stored.generation = 0
            self.objects[key] = stored
            self._written(stored, None)

    def lists(self, kind: str | None = None) -> list[Call]:
        """The list (collection GET) calls (of ``kind``'s plural, when given)."""
        plural = _plural(kind) if kind else None
        return [c for c in self.calls if c.method == "GET" and _PATH.match(c.path)
                and _PATH.match(c.path)["name"] is None and (plural is None or c.path.endswith(f"/{plural}"))]

    def edit(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Another actor (a person, an operator) merges ``patch`` into the object."""
        with self.lock:
            stored = self.objects[(_plural(kind), namespace, name)]
            before = _desired(stored.composed())
            _strip(stored.applied, patch)
            _merge(stored.others, copy.deepcopy(dict(patch)))
            self._written(stored, before)

    def applies(self, kind: str | None = None) -> list[Call]:
        """The apply PATCH calls (of ``kind``'s plural, when given)."""
        plural = _plural(kind) if kind else None
        return [c for c in self.calls if c.method == "PATCH" and (plural is None or f"/{plural}/" in c.path)]

    def take_violations(self) -> list[str]:
        with self.lock:
            taken, self.violations = self.violations, []
            return taken

    def assert_clean(self) -> None:
        problems = self.violations + [f"fake wrote an invalid status: {e}" for e in self.fake_errors]
        assert not problems, f"FakeKube {self.name}: " + "\n".join(problems)

    # -- HTTP -------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        call = Call(request.method.upper(), request.path, dict(request.args.items()), request.content_type)
        with self.lock:
            self.calls.append(call)
            try:
                call.status, call.response = 200, self._dispatch(request, call)
            except ApiError as error:
                call.status, call.response = error.code, error.body()
        response = Response(json.dumps(call.response), status=call.status, content_type="application/json")
        return response(environ, start_response)

    def _dispatch(self, request: Request, call: Call) -> dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        fault = next((f for f in self.faults if f[2] in (None, call.method)), None)
        if fault is not None:
            self.faults.remove(fault)
            raise ApiError(fault[0], "InternalError" if fault[0] >= 500 else "BadRequest", fault[1])
        kind, namespace, name = self._route(call)
        if call.method == "GET" and name is None:
            return self._list(kind, namespace, call)
        if name is None:
            self._violation(call, f"{call.method} on a collection is not served")
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow {call.method} here")
        if call.method == "GET":
            return self._get(kind, namespace, name, call)
        if call.method == "PATCH":
            return self._apply(kind, namespace, name, request, call)
        if call.method == "DELETE":
            return self._delete(kind, namespace, name)
        self._violation(call, f"method {call.method} is not served")
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow {call.method} here")

    def _route(self, call: Call) -> tuple[Kind, str, str | None]:
        match = _PATH.match(call.path)
        kind = KINDS.get(match["plural"]) if match else None
        if match is None or kind is None or (match["core"] or f"{match['group']}/{match['version']}") != kind.api_version:
            self._violation(call, "not served by FakeKube")
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if "watch" in call.query:
            self._violation(call, "watch is not served by FakeKube (the target polls)")
            raise ApiError(405, "MethodNotAllowed", "watch is not served")
        return kind, match["namespace"], match["name"]

    def _violation(self, call: Call, text: str) -> None:
        self.violations.append(f"{call.method} {call.path}: {text}")

    # -- verbs ------------------------------------------------------------------------------------

    def _get(self, kind: Kind, namespace: str, name: str, call: Call) -> dict[str, Any]:
        stored = self._stored(kind, namespace, name)
        stored.polls += 1
        status = self._status(stored)
        stored.shown_status = status
        return self._with_status(stored, status)

    def _list(self, kind: Kind, namespace: str, call: Call) -> dict[str, Any]:
        """The objects of ``kind`` in ``namespace`` matching the label selector, as a ``<Kind>List``."""
        match = _selector(call.query.get("labelSelector", ""))
        if match is None:
            self._violation(call, f"labelSelector {call.query.get('labelSelector')!r} is not served by FakeKube")
            raise ApiError(400, "BadRequest", "unable to parse requirement")
        items = []
        for (plural, ns, _name), stored in sorted(self.objects.items()):
            if plural != kind.plural or ns != namespace:
                continue
            obj = self._with_status(stored, stored.shown_status)
            if not match((obj.get("metadata") or {}).get("labels") or {}):
                continue
            if kind.group not in ("", "apps", "autoscaling"):
                items.append(obj)                      # custom resources keep apiVersion/kind per item
            else:
                items.append({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        return {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                "metadata": {"resourceVersion": str(next(self._revision))}, "items": items}

    def _apply(self, kind: Kind, namespace: str, name: str, request: Request, call: Call) -> dict[str, Any]:
        body = self._apply_body(kind, namespace, name, request, call)
        scenario = self._scenario(kind, namespace, name)
        if scenario.mode == "reject":
            message = scenario.message or "admission webhook denied the request"
            raise _invalid(kind, name, [("spec", message)])
        key = (kind.plural, namespace, name)
        stored = self.objects.get(key)
        if stored is None:
            stored = Stored(kind, namespace, name, str(uuid.uuid4()), _now())
            stored.generation = 0
            if kind.kind == "Deployment" and "replicas" not in body.get("spec", {}):
                stored.others = {"spec": {"replicas": 1}}     # the API server's defaulting
            self.objects[key] = stored
            before = None
        else:
            before = _desired(stored.composed())
        _strip(stored.others, body)
        stored.applied = body
        self._written(stored, before)
        return self._with_status(stored, stored.shown_status)

    def _delete(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        stored = self._stored(kind, namespace, name)
        del self.objects[(kind.plural, namespace, name)]
        next(self._revision)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": kind.group, "kind": kind.plural, "uid": stored.uid}}

    def _stored(self, kind: Kind, namespace: str, name: str) -> Stored:
        stored = self.objects.get((kind.plural, namespace, name))
        if stored is None:
            raise ApiError(404, "NotFound", f'{kind.resource} "{name}" not found',
                           {"name": name, "group": kind.group, "kind": kind.plural})
        return stored

    def _written(self, stored: Stored, before: dict[str, Any] | None) -> None:
        """Bump resourceVersion on a change, and generation (resetting the rollout) on a spec change."""
        after = stored.composed()
        if before is None or _desired(after) != before:
            stored.resource_version = next(self._revision)
        if before is None or _spec_of(after) != _spec_of(before):
            stored.generation += 1
            stored.stale_status, stored.polls = stored.shown_status, 0
            self._new_revision(stored, before)

    # -- validation -------------------------------------------------------------------------------

    def _apply_body(self, kind: Kind, namespace: str, name: str, request: Request, call: Call) -> dict[str, Any]:
        """The apply body, parsed and validated; a 422 ``Status`` (and a violation) when it is not."""
        problems: list[tuple[str, str]] = []
        content_type = (request.content_type or "").split(";")[0].strip()
        if content_type != APPLY_PATCH:
            problems.append(("<request>", f"Content-Type {content_type!r} is not {APPLY_PATCH}"))
        if request.args.get("fieldManager") != FIELD_MANAGER:
            problems.append(("<request>", f"fieldManager is {request.args.get('fieldManager')!r}, not {FIELD_MANAGER!r}"))
        if request.args.get("force") != "true":
            problems.append(("<request>", f"force is {request.args.get('force')!r}, not 'true'"))
        try:
            body = yaml.load(request.get_data(as_text=True), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as error:
            body, problems = None, problems + [("<body>", f"not YAML: {error}")]
        call.body = body
        if not isinstance(body, dict):
            problems.append(("<body>", "the apply body must be an object"))
        else:
            problems += _identity_problems(kind, namespace, name, body)
            validate = validate_inferenceservice if kind.kind == "InferenceService" else validate_builtin
            problems += [tuple(e.split(": ", 1)) if ": " in e else ("<body>", e) for e in validate(body)]
        if problems:
            self._violation(call, "; ".join(f"{f}: {m}" for f, m in problems))
            raise _invalid(kind, name, problems)
        return body

    def _with_status(self, stored: Stored, status: dict[str, Any] | None) -> dict[str, Any]:
        """The object as answered, with ``status`` when there is one (checked against the schema)."""
        obj = stored.composed()
        if status is not None:
            obj["status"] = status
            validate = validate_inferenceservice if stored.kind.kind == "InferenceService" else validate_builtin
            self.fake_errors += [f"{stored.kind.kind} {stored.name}: {e}" for e in validate(obj)
                                 if e.startswith("status")]
        return obj

    # -- scenarios --------------------------------------------------------------------------------

    def _scenario(self, kind: Kind, namespace: str, name: str) -> Scenario:
        return self.scenarios.get((kind.kind, namespace, name)) or self.scenarios.get((None, namespace, name)) \
            or Scenario()

    def _phase(self, stored: Stored) -> str:
        """``stale``, ``progressing`` or the scenario's outcome, from the polls since the spec changed."""
        scenario = self._scenario(stored.kind, stored.namespace, stored.name)
        labels = (stored.composed().get("metadata") or {}).get("labels") or {}
        if scenario.version is not None and labels.get("modelherd.dev/version") != scenario.version:
            scenario = Scenario(after=scenario.after)
        if stored.polls <= scenario.after:
            return "stale" if stored.polls == 1 else "progressing"
        return "progressing" if scenario.mode in ("hang", "reject") else scenario.mode

    def _status(self, stored: Stored) -> dict[str, Any] | None:
        phase = self._phase(stored)
        if phase == "stale":
            return copy.deepcopy(stored.stale_status)
        if stored.kind.kind == "InferenceService":
            return self._isvc_status(stored, phase)
        if stored.kind.kind == "Deployment":
            return _deployment_status(stored, phase)
        return None

    def _new_revision(self, stored: Stored, before: dict[str, Any] | None) -> None:
        """Knative creates a revision when the predictor changes (not for a traffic change alone)."""
        if stored.kind.kind != "InferenceService":
            return
        after = stored.composed()
        if before is None or _revision_spec(after) != _revision_spec(before):
            stored.revision += 1

    def _isvc_status(self, stored: Stored, phase: str) -> dict[str, Any]:
        obj = stored.composed()
        mode = (obj["metadata"].get("annotations") or {}).get(MODE_ANNOTATION, "Standard")
        if mode == "Knative":
            return _knative_status(stored, obj, phase)
        return _standard_status(stored, obj, phase)


# ============================================================================ status by scenario

def _condition(kind: str, status: str, reason: str | None = None, message: str | None = None,
               severity: str | None = None) -> dict[str, Any]:
    cond = {"type": kind, "status": status, "lastTransitionTime": _now()}
    cond.update({k: v for k, v in (("reason", reason), ("message", message), ("severity", severity)) if v})
    return cond


def _model_status(phase: str, revision: str | None, *, previous_loaded: bool) -> dict[str, Any]:
    """``modelStatus`` for a phase (``lastFailureInfo`` names the failed revision)."""
    active = "Loaded" if previous_loaded or phase == "ready" else "Pending"
    if phase == "ready":
        return {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                "copies": {"failedCopies": 0, "totalCopies": 1}}
    if phase in ("fail-load", "invalid"):
        failed = phase == "fail-load"
        info = {"reason": "ModelLoadFailed" if failed else "InvalidPredictorSpec",
                "message": "storage initializer: model artifact not found at storageUri" if failed
                else "no runtime supports the model format",
                "time": _now()}
        if failed:
            info.update({"exitCode": 1, "location": "storage-initializer"})
        if revision:
            info["modelRevisionName"] = revision
        return {"transitionStatus": "BlockedByFailedLoad" if failed else "InvalidSpec",
                "states": {"activeModelState": active if failed else "FailedToLoad", "targetModelState": "FailedToLoad"},
                "copies": {"failedCopies": 1 if failed else 0, "totalCopies": 1 if previous_loaded else 0},
                "lastFailureInfo": info}
    return {"transitionStatus": "InProgress", "states": {"activeModelState": active, "targetModelState": "Loading"},
            "copies": {"failedCopies": 0, "totalCopies": 1 if previous_loaded else 0}}


def _knative_status(stored: Stored, obj: dict[str, Any], phase: str) -> dict[str, Any]:
    """Knative mode: revisions and a traffic split between the rolled-out and the latest revision."""
    latest = stored.latest_revision
    canary = (obj["spec"].get("predictor") or {}).get("canaryTrafficPercent")
    canary = None if canary in (None, 100) else canary
    if phase == "ready":
        stored.ready_revision = latest
        if canary is None and stored.rolled_out != latest:
            stored.previous_rolled_out, stored.rolled_out = stored.rolled_out, latest
    serving = stored.rolled_out
    if phase == "ready" and canary is not None and serving and serving != latest:
        traffic = [{"tag": "prev", "revisionName": serving, "percent": 100 - canary, "latestRevision": False},
                   {"tag": "latest", "revisionName": latest, "percent": canary, "latestRevision": True}]
    elif phase == "ready":
        traffic = [{"tag": "latest", "revisionName": latest, "percent": 100, "latestRevision": True}]
    elif stored.shown_traffic is not None:
        traffic = _retarget(stored.shown_traffic, latest)  # until the new revision is ready, the route stays
    else:
        traffic = [{"tag": "prev", "revisionName": serving, "percent": 100, "latestRevision": False}] if serving else []
    if phase == "ready":
        if stored.route != (latest, canary) and stored.shown_traffic:
            traffic = _retarget(stored.shown_traffic, latest)  # the revision is ready; the route moves next poll
        stored.route = (latest, canary)
    stored.shown_traffic = traffic
    failed = phase in ("fail-load", "invalid")
    reason = ("RevisionFailed" if phase == "fail-load" else "InvalidPredictorSpec") if failed else "Deploying"
    message = f'Revision "{latest}" failed with message: model load failed.' if failed else None
    ready = "True" if phase == "ready" else ("False" if failed else "Unknown")
    predictor = {"latestCreatedRevision": latest, "traffic": traffic,
                 "url": f"http://{stored.name}-predictor.{stored.namespace}.example.com"}
    predictor.update({k: v for k, v in (("latestReadyRevision", stored.ready_revision),
                                        ("latestRolledoutRevision", stored.rolled_out),
                                        ("previousRolledoutRevision", stored.previous_rolled_out)) if v})
    conditions = [_condition("IngressReady", "True" if serving or phase == "ready" else "Unknown"),
                  _condition("PredictorConfigurationReady", ready, None if ready == "True" else reason, message),
                  _condition("PredictorReady", ready, None if ready == "True" else reason, message),
                  _condition("PredictorRouteReady", "True" if serving or phase == "ready" else "Unknown"),
                  _condition("Ready", ready, None if ready == "True" else reason, message)]
    return {"observedGeneration": stored.generation, "deploymentMode": "Knative",
            "url": f"http://{stored.name}.{stored.namespace}.example.com",
            "components": {"predictor": predictor}, "conditions": conditions,
            "modelStatus": _model_status(phase, latest, previous_loaded=serving is not None)}


def _retarget(traffic: list[dict[str, Any]], latest: str) -> list[dict[str, Any]]:
    """The same route, its entries flagged (and tagged) against the current latest revision."""
    return [{**t, "latestRevision": t.get("revisionName") == latest,
             "tag": "latest" if t.get("revisionName") == latest else "prev"} for t in traffic]


def _standard_status(stored: Stored, obj: dict[str, Any], phase: str) -> dict[str, Any]:
    """Standard mode: the predictor's rollout, or — with ``spec.canary`` — the canary's, next to a
    stable predictor that keeps serving."""
    canaries = obj["spec"].get("canary") or []
    predictor_phase = "ready" if canaries else phase
    failed = predictor_phase in ("fail-load", "invalid")
    ready = "True" if predictor_phase == "ready" or (stored.ready_revision and not failed) else \
        ("False" if failed else "Unknown")
    reason = None if ready == "True" else ("ModelLoadFailed" if predictor_phase == "fail-load" else
                                           "InvalidPredictorSpec" if failed else "PredictorNotReady")
    if predictor_phase == "ready":
        stored.ready_revision = f"generation-{stored.generation}"
    conditions = [_condition("IngressReady", "True"), _condition("PredictorReady", ready, reason),
                  _condition("Ready", ready, reason), _condition("Stopped", "False", severity="Info")]
    status: dict[str, Any] = {
        "observedGeneration": stored.generation, "deploymentMode": "Standard",
        "url": f"http://{stored.name}-{stored.namespace}.example.com",
        "components": {"predictor": {"url": f"http://{stored.name}-predictor.{stored.namespace}.svc"}},
        "modelStatus": _model_status(predictor_phase, None, previous_loaded=stored.ready_revision is not None),
    }
    if canaries:
        item = canaries[0]
        name = (item.get("predictor") or {}).get("name", "canary")
        canary_ready = phase == "ready"
        canary_failed = phase in ("fail-load", "invalid")
        status["canaryStatuses"] = [{"name": name, "ready": canary_ready,
                                     "trafficPercent": item.get("trafficPercent", 0) if canary_ready else 0,
                                     "modelStatus": _model_status(phase, None, previous_loaded=False)}]
        conditions.append(_condition("CanaryPredictorReady", "True" if canary_ready else
                                     ("False" if canary_failed else "Unknown"),
                                     None if canary_ready else ("ModelLoadFailed" if canary_failed else "Deploying")))
    status["conditions"] = conditions
    return status


def _deployment_status(stored: Stored, phase: str) -> dict[str, Any]:
    """A Deployment's rollout status for the phase (``kubectl rollout status`` reads these)."""
    spec = stored.composed()["spec"]
    wanted = spec.get("replicas", 1)
    previous = (stored.stale_status or {}).get("availableReplicas", 0)
    if phase == "ready":
        counts = {"replicas": wanted, "updatedReplicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted}
        progressing = _condition("Progressing", "True", "NewReplicaSetAvailable",
                                 f'ReplicaSet "{stored.name}-{stored.generation}" has successfully progressed.')
    else:
        counts = {"replicas": previous + (1 if wanted else 0), "updatedReplicas": 1 if wanted > 1 else 0,
                  "readyReplicas": previous, "availableReplicas": previous}
        if phase == "progress-deadline-exceeded":
            progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded",
                                     f'ReplicaSet "{stored.name}-{stored.generation}" has timed out progressing.')
        else:
            progressing = _condition("Progressing", "True", "ReplicaSetUpdated",
                                     f'ReplicaSet "{stored.name}-{stored.generation}" is progressing.')
    available = counts["availableReplicas"] >= wanted
    status = {"observedGeneration": stored.generation, **{k: v for k, v in counts.items() if v},
              "conditions": [_condition("Available", "True" if available else "False",
                                        "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable"),
                             progressing]}
    if counts["replicas"] > counts["availableReplicas"]:
        status["unavailableReplicas"] = counts["replicas"] - counts["availableReplicas"]
    return status


# =========================================================================================== helpers

def _identity_problems(kind: Kind, namespace: str, name: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """``apiVersion`` / ``kind`` / name / namespace must match the URL; no status in an apply."""
    problems = []
    if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
        problems.append(("apiVersion", f"{body.get('kind')} ({body.get('apiVersion')}) sent to {kind.resource}"))
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if meta.get("name") != name:
        problems.append(("metadata.name", f"{meta.get('name')!r} does not match the URL's {name!r}"))
    if meta.get("namespace") not in (None, namespace):
        problems.append(("metadata.namespace", f"{meta.get('namespace')!r} does not match the URL's {namespace!r}"))
    for server_field in ("uid", "resourceVersion", "generation", "managedFields", "creationTimestamp"):
        if server_field in meta:
            problems.append((f"metadata.{server_field}", "server-set field in an apply body"))
    if "status" in body:
        problems.append(("status", "status cannot be applied to the main resource"))
    return problems


def _selector(text: str) -> Callable[[Mapping[str, str]], bool] | None:
    """An equality-based label selector as a predicate over labels; None when it is not one."""
    terms = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        m = _SELECTOR_TERM.match(term)
        if m is None or (m["not"] and m["op"]) or " " in term:
            return None
        terms.append(m)

    def matches(labels: Mapping[str, str]) -> bool:
        for m in terms:
            if m["not"]:
                ok = m["key"] not in labels
            elif m["op"] is None:
                ok = m["key"] in labels
            elif m["op"] == "!=":
                ok = labels.get(m["key"]) != m["value"]
            else:
                ok = labels.get(m["key"]) == m["value"]
            if not ok:
                return False
        return True

    return matches


def _invalid(kind: Kind, name: str, problems: list[tuple[str, str]] | list[tuple[str, ...]]) -> ApiError:
    """The API server's 422 ``Invalid`` ``Status`` with one cause per problem."""
    causes = [{"reason": "FieldValueInvalid", "message": f"Invalid value: {m}", "field": f} for f, m in problems]
    shown = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    return ApiError(422, "Invalid", f'{kind.kind}.{kind.group or "core"} "{name}" is invalid: [{shown}]',
                    {"name": name, "group": kind.group, "kind": kind.kind, "causes": causes})


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` into ``base`` (maps recursively; lists and scalars replaced); returns ``base``."""
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _strip(layer: dict[str, Any], taken: Mapping[str, Any]) -> None:
    """Remove from ``layer`` the leaf fields ``taken`` sets (a forced apply takes them over)."""
    for key, value in taken.items():
        if key not in layer:
            continue
        if isinstance(value, Mapping) and isinstance(layer[key], dict):
            _strip(layer[key], value)
            if not layer[key]:
                del layer[key]
        else:
            del layer[key]


def _desired(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fields the server changes on every write."""
    out = copy.deepcopy(obj)
    for key in ("resourceVersion", "generation"):
        out["metadata"].pop(key, None)
    return out


def _spec_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    """Everything that bumps ``generation``: all but ``metadata`` and ``status``."""
    return {k: v for k, v in (obj or {}).items() if k not in ("metadata", "status")}


def _revision_spec(obj: dict[str, Any]) -> Any:
    """The Knative revision template: the predictor without its traffic share."""
    predictor = dict(obj.get("spec", {}).get("predictor") or {})
    predictor.pop("canaryTrafficPercent", None)
    return predictor


def _plural(kind: str) -> str:
    for plural, known in KINDS.items():
        if kind in (known.kind, plural):
            return plural
    raise KeyError(f"FakeKube does not serve {kind}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



def write_kubeconfig(path: str | Path, fakes: Mapping[str, FakeKube], *,
                     tokens: Mapping[str, str | None] | None = None) -> Path:
    """A kubeconfig with one context per fake (context = cluster = user name); the first is current.
    ``tokens`` overrides a context's token (to provoke a 401)."""
    tokens = tokens or {}
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "current-context": next(iter(fakes)),
        "clusters": [{"name": c, "cluster": {"server": f.url}} for c, f in fakes.items()],
        "users": [{"name": c, "user": {"token": tokens.get(c) or f.token}} for c, f in fakes.items()],
        "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in fakes],
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ==================================================================================================
# Pytest fixtures


@pytest.fixture
def fake_kube_factory() -> Iterator[Callable[..., FakeKube]]:
    """Start fakes on demand (one per cluster): ``fake_kube_factory("onprem")``. Teardown stops them
    and fails the test if any request broke the schemas or contract."""
    started: list[FakeKube] = []

    def start(name: str = "fake", **kwargs: Any) -> FakeKube:
        fake = FakeKube(name, **kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()
    for fake in started:
        fake.assert_clean()


@pytest.fixture
def fake_kube(fake_kube_factory: Callable[..., FakeKube]) -> FakeKube:
    """One started :class:`FakeKube` named ``fake``; checked at teardown."""
    return fake_kube_factory("fake")
