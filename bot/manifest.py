"""The model manifest (``apiVersion: modelherd.dev/v1``, ``kind: ModelDeployment``) as pydantic models.

One manifest describes one registered model and where it serves: the model reference (a pinned version
or a registry alias), how it is served, the metric gates a candidate must pass, and per environment the
cluster, namespace, rollout strategy and any overrides.  :func:`effective` folds an environment's
overrides into the shared spec, which is what plans, policies and renderers work on.

Every model forbids unknown fields: a misspelt ``replicas`` must be an error, not silently ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION = "modelherd.dev/v1"
KIND = "ModelDeployment"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A model's name names its Service and KServe InferenceService: both need a DNS-1035 label (a letter first).
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"   # a Kubernetes label value (at most 63)
INT32 = 2**31 - 1                                                 # Kubernetes and MLflow integers
MAX_DURATION = 7 * 24 * 3600
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"  # Kubernetes resource.Quantity
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def parse_duration(text: str | int) -> int:
    """``"1h30m"``, ``"10m"``, ``"45s"`` or a number of seconds → seconds (at most 7 days)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        seconds = text
    else:
        m = _DURATION.match(text.strip())
        if not text.strip() or not m:
            raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 10m, 1h30m")
        if any(len(x or "") > 12 for x in m.groups()):
            seconds = MAX_DURATION + 1
        else:
            h, mi, s = (int(x or 0) for x in m.groups())
            seconds = h * 3600 + mi * 60 + s
    if seconds > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than the limit: at most 7 days (168h)")
    return seconds


# a user (alice) or a team (@acme/risk-ml)
OWNER = r"^@?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,38})(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$"


class Metadata(_Strict):
    name: str = Field(pattern=DNS_1035, max_length=63,
                      description="Name of the deployment: lower-case letters, digits and '-', starting with a "
                                  "letter (a DNS-1035 label: it names the Service or InferenceService).")
    description: str | None = Field(None, max_length=2000, description="Free text shown in the plan.")
    owners: list[Annotated[str, Field(pattern=OWNER)]] = Field(
        default_factory=list, description="Users (alice) or teams (@org/team) who own the model.")
    labels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,61}[A-Za-z0-9])?$")],
                 Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        description="Labels copied to the serving objects and given to policies (e.g. data-class: pii).")


class ModelRef(_Strict):
    registry: str = Field("mlflow", description="Registry name from the server settings.")
    name: str = Field(min_length=1, max_length=256, description="Registered model name in the registry.")
    version: int | None = Field(None, ge=1, le=INT32, description="A pinned model version (preferred).")
    alias: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$",
                              description="A registry alias, e.g. champion. Mutable: refused in protected environments by default.")

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 12:
            return int(v)
        return v

    @model_validator(mode="after")
    def _one_reference(self) -> "ModelRef":
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of `version` (pinned) or `alias`")
        return self

    @property
    def reference(self) -> str:
        return f"v{self.version}" if self.version is not None else f"@{self.alias}"


class Resources(_Strict):
    cpu: str | None = Field(None, pattern=QUANTITY, description="CPU request, e.g. \"1\" or 500m.")
    memory: str | None = Field(None, pattern=QUANTITY, description="Memory request, e.g. 2Gi.")
    gpu: int = Field(0, ge=0, le=16, description="Number of GPUs (nvidia.com/gpu).")
    gpu_type: str | None = Field(None, max_length=63, pattern=LABEL_VALUE,
                                description="Node selector value for the GPU product (a label value, e.g. "
                                            "NVIDIA-A100-SXM4-80GB).")
    cpu_limit: str | None = Field(None, pattern=QUANTITY)
    memory_limit: str | None = Field(None, pattern=QUANTITY)

    @field_validator("cpu", "memory", "cpu_limit", "memory_limit", mode="before")
    @classmethod
    def _quantity_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class Replicas(_Strict):
    min: int = Field(1, ge=0, le=1000, description="Minimum replicas (0 allows scale to zero on KServe).")
    max: int | None = Field(None, ge=1, le=1000, description="Maximum replicas; omit for a fixed count.")
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = None
    scale_target: int | None = Field(None, ge=1, le=INT32)

    @model_validator(mode="after")
    def _order(self) -> "Replicas":
        if self.max is not None and self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) is below replicas.min ({self.min})")
        return self


class Runtime(StrEnum):
    KSERVE = "kserve"
    DEPLOYMENT = "deployment"


class Serving(_Strict):
    runtime: Runtime = Field(description="kserve: a KServe InferenceService; deployment: a plain Deployment + Service.")
    format: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                               description="KServe model format (sklearn, xgboost, pytorch, onnx, mlflow, ...).")
    format_version: str | None = None
    serving_runtime: str | None = Field(None, description="Name of a KServe ServingRuntime to pin.")
    protocol: Literal["v1", "v2", "grpc-v2"] | None = None
    deployment_mode: Literal["Standard", "Knative"] = Field(
        "Standard", description="KServe deployment mode; canary uses canaryTrafficPercent in Knative mode.")
    image: str | None = Field(None, description="Container image for runtime: deployment.")
    port: int = Field(8080, ge=1, le=65535)
    args: list[str] = Field(default_factory=list)
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    replicas: Replicas = Field(default_factory=Replicas)
    timeout_seconds: int | None = Field(None, ge=1, le=3600)

    @model_validator(mode="after")
    def _runtime_fields(self) -> "Serving":
        if self.runtime is Runtime.KSERVE and not self.format:
            raise ValueError("runtime kserve needs `format` (the model format, e.g. sklearn)")
        if self.runtime is Runtime.DEPLOYMENT and not self.image:
            raise ValueError("runtime deployment needs `image`")
        if self.runtime is Runtime.DEPLOYMENT and self.format:
            raise ValueError("`format` is for runtime kserve; a deployment takes `image`")
        return self


class Goal(StrEnum):
    MAXIMIZE = "maximize"   # higher is better (auc, accuracy)
    MINIMIZE = "minimize"   # lower is better (latency, error)


class GateMode(StrEnum):
    ENFORCE = "enforce"
    WARN = "warn"


_REGRESSION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class MetricGate(_Strict):
    goal: Goal | None = Field(None, description="Whether higher (maximize) or lower (minimize) is better. "
                                                "Inferred from min (maximize) or max (minimize) when omitted.")
    min: float | None = Field(None, allow_inf_nan=False, description="Absolute lower bound.")
    max: float | None = Field(None, allow_inf_nan=False, description="Absolute upper bound.")
    max_regression: float | str | None = Field(
        None, description="How much worse than the version serving now the candidate may be: "
                          "a number (absolute, e.g. 0.01) or a percentage (relative, e.g. \"5%\").")
    mode: GateMode = Field(GateMode.ENFORCE, description="enforce blocks the change; warn only reports.")

    @field_validator("max_regression")
    @classmethod
    def _regression(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, str):
            m = _REGRESSION.match(v)
            if not m:
                raise ValueError(f"{v!r}: write a number (absolute) or a percentage like \"5%\"")
            if not math.isfinite(float(m.group(1))):
                raise ValueError(f"{v!r} is not a finite percentage")
        elif v is not None and not math.isfinite(v):
            raise ValueError("max_regression must be a finite number (.nan and .inf never compare)")
        elif v is not None and v < 0:
            raise ValueError("max_regression cannot be negative")
        return v

    @model_validator(mode="after")
    def _goal_known(self) -> "MetricGate":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.goal is None and self.min is None and self.max is None:
            raise ValueError("say `goal: maximize` or `goal: minimize` (or give min / max to infer it)")
        if self.goal is None and self.min is not None and self.max is not None:
            raise ValueError("with both min and max, say which way is better: `goal: maximize` or `minimize`")
        return self

    @property
    def direction(self) -> Goal:
        if self.goal is not None:
            return self.goal
        return Goal.MAXIMIZE if self.min is not None else Goal.MINIMIZE

    def regression_limit(self, current: float) -> float | None:
        """The allowed worsening against ``current`` as an absolute amount."""
        if self.max_regression is None:
            return None
        if isinstance(self.max_regression, str):
            m = _REGRESSION.match(self.max_regression)
            assert m
            return abs(current) * float(m.group(1)) / 100.0
        return float(self.max_regression)


class Gates(_Strict):
    metrics: dict[Annotated[str, Field(min_length=1, max_length=250)], MetricGate] = Field(default_factory=dict)
    require_ready: bool = Field(True, description="The model version must be READY in the registry.")


class Rollout(_Strict):
    canary: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(
        None, description="Traffic percentages of the candidate, step by step; the last must be 100.")
    verify_for: str | int = Field("0s", description="How long each step is watched before the next (e.g. 10m).")
    timeout: str | int = Field("15m", description="How long a step may take to become ready.")
    inconclusive_limit: int = Field(
        0, ge=0, le=100,
        description="How many inconclusive live measurements (NaN: no traffic, or no series) the rollout "
                    "tolerates: each makes the step wait a minute and measure again; one more fails the step.")

    @field_validator("verify_for", "timeout")
    @classmethod
    def _duration(cls, v: str | int) -> str | int:
        parse_duration(v)
        return v

    @field_validator("canary")
    @classmethod
    def _steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is None:
            return None
        if not steps:
            raise ValueError("canary needs at least one step, e.g. [10, 50, 100]")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"canary steps must increase: {steps}")
        if steps[-1] != 100:
            raise ValueError(f"the last canary step must be 100 (got {steps[-1]})")
        return steps

    @property
    def strategy(self) -> str:
        return "canary" if self.canary else "direct"

    @property
    def verify_seconds(self) -> int:
        return parse_duration(self.verify_for)


class ModelOverride(_Strict):
    version: int | None = Field(None, ge=1, le=INT32)
    alias: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$")

    @model_validator(mode="after")
    def _one(self) -> "ModelOverride":
        if self.version is not None and self.alias is not None:
            raise ValueError("give `version` or `alias`, not both")
        return self


class Environment(_Strict):
    cluster: str = Field(pattern=DNS_LABEL, max_length=63, description="Cluster name from the server settings.")
    namespace: str = Field(pattern=DNS_LABEL, max_length=63)
    model: ModelOverride | None = Field(None, description="Serve another version here (e.g. staging ahead of production).")
    resources: Resources | None = None
    replicas: Replicas | None = None
    rollout: Rollout = Field(default_factory=Rollout)
    url: str | None = Field(None, description="Where the environment's endpoint is reachable (shown in the plan).")


class Spec(_Strict):
    model: ModelRef
    serving: Serving
    gates: Gates = Field(default_factory=Gates)
    environments: dict[Annotated[str, Field(pattern=DNS_LABEL, max_length=63)], Environment] = Field(
        min_length=1, description="Where the model serves, by environment name.")


class ModelDeployment(_Strict):
    """A model manifest."""

    api_version: Literal["modelherd.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["ModelDeployment"]
    metadata: Metadata
    spec: Spec


class Deployment(_Strict):
    """One model in one environment with the environment's overrides folded in: the unit of a plan."""

    name: str
    environment: str
    cluster: str
    namespace: str
    model: ModelRef
    serving: Serving
    rollout: Rollout
    gates: Gates
    owners: tuple[str, ...]
    labels: dict[str, str]
    description: str | None = None
    url: str | None = None
    #: The forge repository (``owner/name``) deploying it; not in manifests: the rollout engine sets it
    #: from the rollout, and rendered objects carry it as the ``modelherd.dev/repository`` annotation.
    repository: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.environment)


def effective(manifest: ModelDeployment, environment: str) -> Deployment:
    env = manifest.spec.environments[environment]
    model = manifest.spec.model
    if env.model is not None:
        model = ModelRef(registry=model.registry, name=model.name,
                         version=env.model.version, alias=env.model.alias) \
            if (env.model.version or env.model.alias) else model
    serving = manifest.spec.serving
    changes: dict[str, Any] = {}
    if env.resources is not None:
        changes["resources"] = env.resources
    if env.replicas is not None:
        changes["replicas"] = env.replicas
    if changes:
        serving = serving.model_copy(update=changes)
    return Deployment(
        name=manifest.metadata.name, environment=environment, cluster=env.cluster,
        namespace=env.namespace, model=model, serving=serving, rollout=env.rollout,
        gates=manifest.spec.gates, owners=tuple(manifest.metadata.owners),
        labels=dict(manifest.metadata.labels), description=manifest.metadata.description, url=env.url)


@dataclass(frozen=True)
class Problem:
    """What the schema alone cannot say: a combination of fields that no serving object can express."""

    path: tuple[str | int, ...]      # where the author wrote it, as a manifest path
    message: str
    hint: str | None = None


#: ``<name>-v<version>-predictor``: the Deployment KServe runs a Standard-mode canary as (see render.py)
CANARY_DEPLOYMENT = "{name}-v{version}-predictor"
MAX_VERSION_DIGITS = len(str(INT32))


def serving_problems(manifest: ModelDeployment) -> list[Problem]:
    """Combinations the schema accepts but no rendered object can carry, each placed on the field to
    change: whatever :func:`modelherd.loading.load_manifests` accepts, the planner can render and the
    rollout engine can apply at every step."""
    problems: dict[tuple[str | int, ...], Problem] = {}
    serving = manifest.spec.serving
    name = manifest.metadata.name
    for env_name, env in manifest.spec.environments.items():
        dep = effective(manifest, env_name)
        env_path = ("spec", "environments", env_name)
        canary = [p for p in (env.rollout.canary or []) if p != 100]
        metric = dep.serving.replicas.scale_metric
        if serving.runtime is Runtime.DEPLOYMENT and metric in ("concurrency", "rps"):
            where = env_path if env.replicas is not None and env.replicas.scale_metric else ("spec", "serving")
            path = where + ("replicas", "scale_metric")
            problems[path] = Problem(path, f"scale_metric {metric} needs runtime: kserve",
                                     "runtime: deployment scales on cpu or memory")
        if serving.runtime is Runtime.KSERVE and serving.deployment_mode == "Standard" and canary:
            version = dep.model.version
            digits = len(str(version)) if version is not None else MAX_VERSION_DIGITS
            longest = 63 - len(CANARY_DEPLOYMENT.format(name="", version="")) - digits
            if len(name) > longest:
                path = ("metadata", "name")
                shown = CANARY_DEPLOYMENT.format(name=name, version=version if version is not None else "N" * digits)
                why = (f"version {version}" if version is not None
                       else f"a version of up to {digits} digits (the model is referenced by alias)")
                problems.setdefault(path, Problem(
                    path, f"a KServe Standard-mode canary of {why} in {env_name} runs as the Deployment "
                          f"{shown!r}, longer than 63 characters",
                    f"shorten metadata.name to at most {longest} characters, or use deployment_mode: Knative"))
    return list(problems.values())


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, for editors (yaml-language-server) and other tools."""
    schema = ModelDeployment.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://modelherd.dev/schemas/v1/model-deployment.json"
    schema["title"] = "modelherd ModelDeployment"
    return schema
