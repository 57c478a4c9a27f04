"""Server-side settings (pydantic-settings): a YAML/JSON file plus ``MODELHERD_*`` environment variables.

Environment variables use the prefix ``MODELHERD_`` and ``__`` for nesting, e.g.
``MODELHERD_REGISTRIES__MLFLOW__TRACKING_URI``.  They override the file named by ``MODELHERD_CONFIG``
(or ``--settings``).  Secrets are :class:`~pydantic.SecretStr` so that they never reach a log line.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class Provider(StrEnum):
    ONPREM = "onprem"
    AWS = "aws"
    GCP = "gcp"
    AZURE = "azure"
    OTHER = "other"


class ClusterConfig(BaseModel):
    """A cluster manifests can name, how to reach it, and the facts policies may use."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider = Provider.OTHER
    target: Literal["kubernetes", "mlflow-alias"] = Field(
        "kubernetes", description="How rollouts reach this cluster: server-side apply of the rendered objects "
                                  "(kubernetes), or moving the registry alias named after the environment "
                                  "for serving stacks that follow aliases (mlflow-alias).")
    region: str | None = None
    gpus: bool = Field(False, description="The cluster has GPU nodes.")
    gpu_types: list[str] = Field(default_factory=list)
    kubeconfig: str | None = Field(None, description="Path of a kubeconfig file; omit for in-cluster config.")
    context: str | None = None
    in_cluster: bool = False
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def onprem(self) -> bool:
        return self.provider is Provider.ONPREM

    def facts(self, name: str) -> dict[str, Any]:
        """What policies see as ``input.cluster``."""
        return {"name": name, "provider": str(self.provider), "region": self.region, "onprem": self.onprem,
                "gpus": self.gpus, "gpu_types": list(self.gpu_types), "labels": dict(self.labels),
                "target": self.target, "known": True}


class MlflowRegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field("sqlite:///modelherd-registry.db",
                              description="MLflow tracking/registry URI (http(s)://… or a database URI).")
    ui_url: str | None = Field(None, description="Base URL of the MLflow UI, for links in the plan.")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout against the registry.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed registry request.")


class GitHubSettings(BaseModel):
    """The GitHub App: its identity, the webhook secret and the API it talks to (github.com or GHES)."""

    model_config = ConfigDict(extra="forbid")

    app_id: int | None = Field(None, description="The GitHub App's id (needed to call the API).")
    private_key_path: Path | None = Field(None, description="PEM private key of the GitHub App.")
    webhook_secret: SecretStr | None = Field(
        None, description="Secret that signs webhook deliveries; the server refuses to start without it.")
    api_url: str = Field("https://api.github.com", description="REST API root; GHES: https://HOST/api/v3.")
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0,
                                description="Largest webhook body accepted (GitHub caps payloads at 25 MB).")
    write_interval_seconds: float = Field(
        1.0, ge=0, description="Least time between two mutating requests of one installation, across all "
                               "workers (GitHub asks for about a second).")


class SlackChannels(BaseModel):
    """Channels by what a message is about; the most specific match wins: kind, then team, then environment."""

    model_config = ConfigDict(extra="forbid")

    kinds: dict[str, str] = Field(default_factory=dict, description=(
        "Channel per event kind: plan_ready, approval, deploy_started, canary_step, deploy_succeeded, "
        "deploy_failed, deploy_cancelled, rolled_back, manual_rollback, drift_found, lock_conflict."))
    teams: dict[str, str] = Field(default_factory=dict,
                                  description="Channel per model owner team (@org/team, as manifests name it).")
    environments: dict[str, str] = Field(default_factory=dict, description="Channel per environment.")


class SlackRouting(BaseModel):
    """Where Slack messages of a scope go: the server, one repository, or a repo's ``.modelherd.yaml``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: this scope sends nothing to Slack.")
    default_channel: str | None = Field(None, description="Channel id (C0123…) or #name when nothing more specific matches.")
    channels: SlackChannels = Field(default_factory=SlackChannels)


class SlackSettings(SlackRouting):
    """Slack notifications (``MODELHERD_SLACK__TOKEN``, ``MODELHERD_SLACK__BASE_URL``) and their routing."""

    token: SecretStr = Field(description="Bot token (xoxb-…) with chat:write.")
    base_url: str = Field("https://slack.com/api/", description="Slack Web API root (a fake in tests).")
    repos: dict[str, SlackRouting] = Field(
        default_factory=dict, description="Routing per repository (owner/name); enabled: false mutes one.")
    prominent_environments: list[str] = Field(
        default_factory=lambda: ["production", "prod"],
        description="Environments whose failures and rollbacks are also broadcast to the channel.")


class GitLabSettings(BaseModel):
    """A GitLab instance (gitlab.com or self-managed): where its API is, the token the bot acts with,
    and the secret webhooks carry in ``X-Gitlab-Token``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("https://gitlab.com", description="Base URL of the instance (the API is at <url>/api/v4).")
    token: SecretStr = Field(description="Access token of the bot user (scope api), sent as PRIVATE-TOKEN.")
    webhook_secret: SecretStr | None = Field(
        None, description="Secret token of the project/group webhooks; the server refuses to start without it.")
    write_interval_seconds: float = Field(
        0.5, ge=0, description="Least time between two mutating requests with the token, across all workers.")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    password: SecretStr


class MetricsSettings(BaseModel):
    """Where live metrics for canary verification come from (Prometheus), one PromQL query per metric,
    and how to authenticate there (``MODELHERD_METRICS__BEARER_TOKEN``, ``…__BASIC_AUTH__PASSWORD``)."""

    model_config = ConfigDict(extra="forbid")

    prometheus_url: str = Field(description="Prometheus base URL, e.g. http://prometheus.monitoring:9090.")
    queries: dict[str, str] = Field(default_factory=dict,
                                    description="Metric name (as gated in manifests) → PromQL with $model, "
                                                "$version, $environment, $namespace, $cluster, $window.")
    timeout_seconds: float = Field(10.0, gt=0)
    bearer_token: SecretStr | None = Field(None, description="Sent as `Authorization: Bearer …`.")
    bearer_token_file: Path | None = Field(
        None, description="A file holding the bearer token, read at every query (rotated service-account tokens).")
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic authentication: username and password.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra headers sent with every query, e.g. X-Scope-OrgID for a "
                                          "Mimir / Cortex / Thanos tenant (values are kept secret).")
    ca_bundle: Path | None = Field(None, description="PEM file of the CAs that sign the Prometheus server's "
                                                     "certificate (default: the system's).")

    @model_validator(mode="after")
    def _one_authentication(self) -> "MetricsSettings":
        given = [n for n in ("bearer_token", "bearer_token_file", "basic_auth") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of bearer_token, bearer_token_file or basic_auth, not {' and '.join(given)}")
        if given and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError(f"headers.Authorization and {given[0]} both set the Authorization header")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"ca_bundle {self.ca_bundle} is not a file")
        return self


class _YamlFileSource(PydanticBaseSettingsSource):
    """Settings from the file named by ``MODELHERD_CONFIG`` (YAML or JSON)."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path:
            return {}
        text = Path(self.path).read_text(encoding="utf-8")
        data = json.loads(text) if self.path.endswith(".json") else yaml.safe_load(text)
        return data or {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELHERD_", env_nested_delimiter="__", extra="forbid")

    registries: dict[str, MlflowRegistryConfig] = Field(
        default_factory=lambda: {"mlflow": MlflowRegistryConfig()},
        description="Registries by the name manifests use in spec.model.registry.")
    clusters: dict[str, ClusterConfig] = Field(default_factory=dict,
                                               description="Clusters by the name manifests use.")
    github: GitHubSettings | None = Field(None, description="The GitHub App; omit to run without GitHub.")
    gitlab: GitLabSettings | None = Field(None, description="A GitLab instance; omit to run without GitLab.")
    slack: SlackSettings | None = Field(None, description="Slack notifications; omit to send none.")
    database_url: str = Field("sqlite:///modelherd.db",
                              description="SQLAlchemy URL of the store (sqlite:///… or postgresql+psycopg://…).")
    queue_url: str = Field("sqlite:///modelherd-queue.db",
                           description="Job queue: sqlite:///FILE (embedded) or redis://HOST:PORT/DB (scale-out).")
    queue_name: str = Field("modelherd", description="Queue name; also the Redis key prefix (huey.*.<name>).")
    metrics: MetricsSettings | None = Field(None, description="Live metrics for canary verification; "
                                                             "without it a step is verified by readiness.")
    drift_interval_seconds: float = Field(600.0, ge=30, description="How often each repository's default "
                                          "branch is compared with what serves (besides every push).")
    worker_in_process: bool = Field(False, description="`modelherd serve` also runs the job worker in-process.")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        file_source = _YamlFileSource(settings_cls, os.environ.get("MODELHERD_CONFIG"))
        return (init_settings, env_settings, dotenv_settings, file_source, file_secret_settings)

    def cluster_facts(self) -> dict[str, dict[str, Any]]:
        return {name: c.facts(name) for name, c in self.clusters.items()}


def load_settings(path: str | None = None) -> Settings:
    """Settings from ``path`` (or ``MODELHERD_CONFIG``) and the environment."""
    if not path:
        return Settings()

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                       file_secret_settings):
            return (init_settings, env_settings, dotenv_settings, _YamlFileSource(settings_cls, path),
                    file_secret_settings)

    return FileSettings()
