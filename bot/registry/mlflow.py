"""The MLflow Model Registry adapter: :class:`MlflowRegistry` turns a version or an alias into a
:class:`~modelherd.registry.ModelVersionInfo`.

It talks to the registry through :class:`mlflow.tracking.MlflowClient`, which ``mlflow-skinny`` provides,
either over HTTP (``http(s)://`` tracking server) or in-process on a database URI (``sqlite:///…``, which
also needs ``sqlalchemy`` and ``alembic``).

What a resolve gathers, and from where:

* the version (``get_model_version`` / ``get_model_version_by_alias``): status, source, tags, aliases,
  description, creator (``user_id``), creation time;
* metrics: the source run's latest values (``get_run(run_id).data.metrics``) merged with the MLflow 3
  logged model's metrics (``get_logged_model(model_id).metrics``).  **The logged model's value wins** on
  a name clash: it was logged against this very model, while a run may have trained several;
* lineage: run id and name, experiment id; the logged model id comes from ``version.model_id`` or,
  because the open-source SQL store does not keep that field (MLflow 3.17), from a ``models:/m-…`` source;
* the storage location KServe can fetch: ``get_model_version_download_uri`` with ``runs:/`` and
  ``models:/m-…`` resolved through the run's artifact URI or the logged model's artifact location.  A
  location a model server cannot fetch (``mlflow-artifacts:``, a path on the tracking server, ``dbfs:``)
  becomes ``storage_uri=None`` and :func:`storage_problem` says why.

Timeouts and retries.  MLflow's HTTP client reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default 120 s),
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (7), ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` (2) and
``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` (1.0) from ``os.environ`` on *every* request
(``mlflow.utils.rest_utils.http_request``), and ``MlflowClient`` offers no per-client setting: left alone,
an unreachable server takes minutes to fail.  The adapter therefore sets these variables from its
:class:`~modelherd.settings.MlflowRegistryConfig` only while one of its calls runs and restores them
afterwards (:func:`http_limits`), under a process-wide lock so two adapters with different settings never
interleave.  Other code using MLflow over HTTP in another thread *during* such a call would see the same
limits; the bot has no such code.  The timeout is a whole number of seconds (MLflow parses it as an
``int``), rounded up, at least 1.  Backoff between retries is 0 s, then 2 s, 4 s… (factor 1, jitter up to
0.5 s), and a ``Retry-After`` header is not honoured, so the worst case is about
``(retries + 1) × timeout + 2^retries`` seconds.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse, urlsplit, urlunsplit

from modelherd.clock import epoch
from modelherd.registry import ModelVersionInfo, RegistryError, VersionNotFound
from modelherd.settings import MlflowRegistryConfig

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.entities import Metric, Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
BAD_PARAMETER = "INVALID_PARAMETER_VALUE"

# ---------------------------------------------------------------------------------------------------
# HTTP limits
# ---------------------------------------------------------------------------------------------------

_ENV_LOCK = threading.RLock()
_BACKOFF_FACTOR = 1
_BACKOFF_JITTER = 0.5


def http_limit_env(timeout_seconds: float, retries: int) -> dict[str, str]:
    """The MLflow environment variables that bound one request to ``timeout_seconds`` and ``retries``."""
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_seconds))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(_BACKOFF_FACTOR),
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": str(_BACKOFF_JITTER),
        "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
    }


@contextmanager
def http_limits(timeout_seconds: float, retries: int) -> Iterator[None]:
    """Apply :func:`http_limit_env` to ``os.environ`` for the duration of the block, then restore it."""
    values = http_limit_env(timeout_seconds, retries)
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


# ---------------------------------------------------------------------------------------------------
# Pure helpers: metrics, times, storage locations, links
# ---------------------------------------------------------------------------------------------------


def merge_metrics(run_metrics: Mapping[str, float], model_metrics: Iterable[Metric] | None) -> dict[str, float]:
    """Run metrics overlaid with the logged model's; for a key logged several times on the model, the
    value at the highest step (then the latest timestamp) counts."""
    merged = {k: float(v) for k, v in run_metrics.items()}
    latest: dict[str, Metric] = {}
    for metric in model_metrics or ():
        seen = latest.get(metric.key)
        if seen is None or (metric.step, metric.timestamp) >= (seen.step, seen.timestamp):
            latest[metric.key] = metric
    merged.update({k: float(m.value) for k, m in latest.items()})
    return merged


def iso_utc(millis: int | None) -> str | None:
    """Epoch milliseconds → ``2026-11-26T05:14:15Z``."""
    if not millis:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")
_RUNS_URI = re.compile(r"^runs:/([0-9a-zA-Z]+)(?:/(.*))?$")
_WASBS = re.compile(r"^wasbs?://(?P<container>[^@/]+)@(?P<account>[^./]+)"
                    r"\.blob\.core\.windows\.net/?(?P<path>.*)$")
# schemes a KServe storage initializer can download from (kserve/python/kserve/storage)
FETCHABLE_SCHEMES = frozenset({"s3", "gs", "hdfs", "webhdfs", "http", "https", "pvc", "hf", "oci"})


def logged_model_id(version_model_id: str | None, source: str | None) -> str | None:
    """The MLflow 3 logged model behind a version: its ``model_id`` or a ``models:/m-…`` source."""
    if version_model_id:
        return version_model_id
    m = _LOGGED_MODEL_URI.match(source or "")
    return m.group(1) if m else None


def serving_uri(uri: str | None) -> str | None:
    """``uri`` as a model server can fetch it, or ``None`` (see :func:`storage_problem`).

    ``wasbs://container@account.blob.core.windows.net/path`` becomes the ``https://`` blob URL KServe reads.
    """
    if not uri:
        return None
    azure = _WASBS.match(uri)
    if azure:
        return f"https://{azure['account']}.blob.core.windows.net/{azure['container']}/{azure['path']}".rstrip("/")
    return uri if urlparse(uri).scheme.lower() in FETCHABLE_SCHEMES else None


def storage_problem(uri: str | None) -> str | None:
    """Why a model server cannot fetch ``uri``; ``None`` when it can."""
    if serving_uri(uri) is not None:
        return None
    if not uri:
        return "the registry gives no artifact location for this version"
    scheme = urlparse(uri).scheme.lower()
    if scheme == "mlflow-artifacts":
        return (f"{uri} is proxied by the MLflow server (--serve-artifacts); model servers cannot read it. "
                "Give experiments an s3://, gs:// or https:// artifact root, or register the version "
                "with its storage location as source")
    if scheme in ("runs", "models"):
        return f"{uri} is an MLflow URI that could not be resolved to a storage location"
    if scheme in ("", "file") or len(scheme) == 1:  # a path, or a Windows drive letter
        return f"{uri} is a path on the tracking server's disk, not shared storage"
    known = ", ".join(sorted(FETCHABLE_SCHEMES))
    return f"{uri}: the {scheme}:// scheme is not one a model server can fetch ({known})"


def version_url(ui_url: str | None, name: str, version: str) -> str | None:
    """Link to the version's page in the MLflow UI."""
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"


def redact_uri(uri: str) -> str:
    """``uri`` without a password (``postgresql://bot:***@db/mlflow``): registry URIs reach PR comments."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_CAUSES = (
    (re.compile(r"Connection refused|Failed to establish a new connection", re.I), "connection refused"),
    (re.compile(r"Name or service not known|nodename nor servname|getaddrinfo failed|"
                r"Temporary failure in name resolution", re.I), "host name not found"),
    (re.compile(r"timed out|Timeout", re.I), "timed out"),
    (re.compile(r"too many (\d{3}) error responses"), r"HTTP \1"),
    (re.compile(r"failed with error code (\d{3}) != 200"), r"HTTP \1"),      # MLflow 3.18 and later
    (re.compile(r"SSLError|CERTIFICATE_VERIFY_FAILED", re.I), "TLS error"),
)


def failure_cause(text: str) -> str | None:
    """The gist of a transport failure buried in urllib3's text (``connection refused``, ``HTTP 503``…)."""
    for pattern, label in _CAUSES:
        found = pattern.search(text)
        if found:
            return found.expand(label)
    return None


# ---------------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------------


class MlflowRegistry:
    """:class:`~modelherd.registry.Registry` backed by an MLflow tracking server or database."""

    def __init__(self, config: MlflowRegistryConfig | None = None, *, client: MlflowClient | None = None):
        self.config = config or MlflowRegistryConfig()
        self._client = client

    @property
    def uri(self) -> str:
        return self.config.tracking_uri

    @property
    def shown_uri(self) -> str:
        """The URI as messages show it (no password)."""
        return redact_uri(self.uri)

    def _clean(self, text: str) -> str:
        """``text`` with the raw URI (and so any password in it) replaced by :attr:`shown_uri`."""
        return text.replace(self.uri, self.shown_uri) if self.uri != self.shown_uri else text

    @property
    def client(self) -> MlflowClient:
        """The :class:`MlflowClient`, built on first use (building one on a database URI opens it)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    # -- the Registry protocol ----------------------------------------------------------------------

    def resolve(self, name: str, *, version: int | None = None, alias: str | None = None) -> ModelVersionInfo:
        """Look up ``name`` at ``version`` or ``alias``, with metrics, tags, lineage and storage location.

        Raises :class:`VersionNotFound` when the registry says the model, version or alias does not exist
        and :class:`RegistryError` when it cannot be asked (unreachable, 5xx, timeout, misconfigured).
        """
        if (version is None) == (alias is None):
            raise ValueError("resolve needs exactly one of version or alias")
        with self._guard(f"{name} {'v' + str(version) if version is not None else '@' + str(alias)}"):
            mv = self._get_version(name, version, alias)
            return self._info(mv)

    # -- passthroughs for the rollout target --------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | str) -> None:
        """Point ``alias`` of ``name`` at ``version`` (idempotent)."""
        with self._guard(f"setting {name}@{alias}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from ``name``."""
        with self._guard(f"deleting {name}@{alias}"):
            self.client.delete_registered_model_alias(name, alias)

    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        """Set tag ``key`` on a version (idempotent)."""
        with self._guard(f"tagging {name} v{version}"):
            self.client.set_model_version_tag(name, str(version), key, value)

    # -- internals ----------------------------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Bound HTTP requests by the config and turn MLflow's errors into the registry's two errors."""
        from mlflow.exceptions import MlflowException
        from requests import RequestException

        try:
            with http_limits(self.config.timeout_seconds, self.config.retries):
                yield
        except (VersionNotFound, RegistryError):
            raise
        except MlflowException as exc:
            if _error_code(exc) == NOT_FOUND:
                detail = _short(self._clean(str(exc)))
                raise VersionNotFound(f"{what}: {detail} (registry {self.shown_uri})") from exc
            raise RegistryError(self._failure(what, exc)) from exc
        except (RequestException, OSError, ImportError) as exc:
            raise RegistryError(self._failure(what, exc)) from exc

    def _failure(self, what: str, exc: BaseException) -> str:
        """``MLflow registry at URI failed on WHAT: connection refused (timeout 10 s, 2 retries)``."""
        from mlflow.exceptions import RestException

        cause = None if isinstance(exc, RestException) else failure_cause(str(exc))  # the server answered
        if cause is None:
            return f"MLflow registry at {self.shown_uri} failed on {what}: {_short(self._clean(str(exc)))}"
        limits = f"timeout {self.config.timeout_seconds:g} s, {self.config.retries} retries"
        return f"MLflow registry at {self.shown_uri} failed on {what}: {cause} ({limits})"

    def _get_version(self, name: str, version: int | None, alias: str | None) -> ModelVersion:
        """The registry's version record, or :class:`VersionNotFound` saying what is missing."""
        from mlflow.exceptions import MlflowException

        try:
            if version is not None:
                return self.client.get_model_version(name, str(version))
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            code = _error_code(exc)
            missing_alias = code == BAD_PARAMETER and alias is not None and "alias" in str(exc).lower()
            if code != NOT_FOUND and not missing_alias:
                raise
            raise VersionNotFound(self._not_found_message(name, version, alias)) from exc

    def _not_found_message(self, name: str, version: int | None, alias: str | None) -> str:
        """Say whether the model itself or only the version/alias is missing (one more request)."""
        from mlflow.exceptions import MlflowException

        where = f"in the MLflow registry at {self.shown_uri}"
        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if _error_code(exc) == NOT_FOUND:
                return f"no registered model named {name!r} {where}"
            raise
        if version is not None:
            return f"model {name!r} has no version {version} {where}"
        return f"model {name!r} has no alias @{alias} {where}"

    def _info(self, mv: ModelVersion) -> ModelVersionInfo:
        """Assemble the plain record: version fields, run, logged model, storage location, link."""
        run = self._optional(lambda: self.client.get_run(mv.run_id)) if mv.run_id else None
        model_id = logged_model_id(getattr(mv, "model_id", None), mv.source)
        model = self._optional(lambda: self.client.get_logged_model(model_id)) if model_id else None
        location = self._location(mv, run, model)
        storage = serving_uri(location)
        if storage is None:
            log.warning("%s v%s has no storage location a model server can fetch: %s",
                        mv.name, mv.version, storage_problem(location))
        return ModelVersionInfo(
            name=mv.name, version=str(mv.version), status=str(mv.status), storage_uri=storage,
            source=mv.source or None, run_id=mv.run_id or None, model_id=model_id,
            created_at=iso_utc(mv.creation_timestamp), registered_by=mv.user_id or None,
            description=mv.description or None, tags=dict(mv.tags or {}),
            aliases=tuple(sorted(mv.aliases or ())),
            metrics=merge_metrics(run.data.metrics if run else {}, model.metrics if model else None),
            run_name=run.info.run_name if run else None,
            experiment_id=run.info.experiment_id if run else (model.experiment_id if model else None),
            url=version_url(self.config.ui_url, mv.name, str(mv.version)))

    def _optional(self, fetch: Any) -> Any:
        """``fetch()``, or ``None`` when the registry says the object (run, logged model) is gone."""
        from mlflow.exceptions import MlflowException

        try:
            return fetch()
        except MlflowException as exc:
            if _error_code(exc) != NOT_FOUND:
                raise
            log.warning("registry object gone: %s", _short(self._clean(str(exc))))
            return None

    def _location(self, mv: ModelVersion, run: Run | None, model: Any) -> str | None:
        """Where the version's files are: the download URI with ``runs:/`` and ``models:/m-…`` resolved."""
        uri = self.client.get_model_version_download_uri(mv.name, str(mv.version)) or mv.source
        runs = _RUNS_URI.match(uri or "")
        if runs and run is not None and runs.group(1) == run.info.run_id:
            path = (runs.group(2) or "").strip("/")
            return f"{run.info.artifact_uri.rstrip('/')}/{path}" if path else run.info.artifact_uri
        if _LOGGED_MODEL_URI.match(uri or "") and model is not None:
            return model.artifact_location
        return uri


# ---------------------------------------------------------------------------------------------------
# Seeding (tests, the quick start)
# ---------------------------------------------------------------------------------------------------


def register_version(client: MlflowClient, name: str, *, metrics: Mapping[str, float],
                     tags: Mapping[str, str] | None = None, source: str | None = None,
                     aliases: Iterable[str] = (), description: str | None = None,
                     experiment: str = "modelherd-seed", run_name: str | None = None) -> ModelVersion:
    """Register a new version of ``name`` the way a training job would, and return it (with aliases).

    Creates the experiment and the registered model when missing, a finished run carrying ``metrics``,
    and a version whose source is ``source`` or ``s3://models/<name>/<version>``.
    """
    from mlflow.entities import Metric, RunStatus

    run = client.create_run(_experiment_id(client, experiment), run_name=run_name or f"train-{name}")
    now = int(epoch() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    _ensure_registered_model(client, name)
    mv = client.create_model_version(
        name, source or f"s3://models/{name}/{_next_version(client, name)}", run_id=run.info.run_id,
        tags=dict(tags or {}), description=description, await_creation_for=0)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, mv.version)
    return client.get_model_version(name, mv.version)


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    return found.experiment_id if found else client.create_experiment(experiment)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _error_code(exc) != NOT_FOUND:
            raise
        client.create_registered_model(name)


def _next_version(client: MlflowClient, name: str) -> int:
    """The number the next version of ``name`` will get (for a readable default source)."""
    versions = client.search_model_versions(f"name = '{name}'")
    return max((int(v.version) for v in versions), default=0) + 1
