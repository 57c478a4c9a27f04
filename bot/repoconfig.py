"""The repository's own settings, ``.modelherd.yaml``, always read at the **default branch's tip**.

A pull request must not be able to loosen its own rules, so the planner reads this file (and the
repository's Rego policies) at the default branch's tip — never at the head, nor at the pull request's
base, which may be any branch its author pushed.  A repository without the file
gets :data:`DEFAULT` settings: manifests under ``models/``, environments staging then production, with
production protected.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelherd.checks import Finding, Severity
from modelherd.loading import validation_findings
from modelherd.manifest import DNS_LABEL, OWNER
from modelherd.yamlsafe import YamlError, load_documents

CONFIG_FILE = ".modelherd.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovalRule(_Strict):
    """Who must approve a change that reaches an environment."""

    count: int = Field(1, ge=0, le=20, description="How many distinct approvals are needed.")
    owners: bool = Field(False, description="Approvals must come from the manifest's owners (users, or members "
                                            "of owner teams), as read from the base manifest.")
    users: list[Annotated[str, Field(pattern=OWNER)]] = Field(default_factory=list,
                                                             description="Only these users' approvals count.")
    teams: list[Annotated[str, Field(pattern=OWNER)]] = Field(default_factory=list,
                                                             description="Approvals from these teams count.")


class ApprovalPolicy(_Strict):
    """How approvals are counted in this repository (the defaults are the safe choice)."""

    require_head_sha: bool = Field(True, description="Only approvals of the PR's current head commit count; "
                                                     "a push makes earlier approvals stale.")
    allow_author: bool = Field(False, description="The PR's author may approve their own change.")
    allow_committers: bool = Field(False, description="People who pushed commits to the PR may approve it.")


class EnvironmentConfig(_Strict):
    name: str = Field(pattern=DNS_LABEL, max_length=63)
    protected: bool = Field(False, description="Protected environments take pinned versions only and cannot be "
                                               "deployed with /deploy before merge.")
    approvals: ApprovalRule | None = None
    self_heal: bool = Field(False, description="Drift detection re-applies the desired state.")
    prune: bool | None = Field(None, description="When a merged pull request deletes the model's manifest (or "
                                                 "this environment from it), remove the model from the cluster; "
                                                 "unset: the repository's prune.")


class PolicyConfig(_Strict):
    default_bundle: bool = Field(True, description="Evaluate modelherd's default policies.")
    paths: list[str] = Field(default_factory=lambda: ["policies/"],
                             description="Repository folders (or .rego files) with the repo's own policies.")
    data: dict[str, Any] = Field(default_factory=dict,
                                 description="Data given to policies as data.modelherd.config (freeze windows, ceilings).")


class RepoConfig(_Strict):
    version: int = Field(1, ge=1, le=1)
    manifests: list[str] = Field(default_factory=lambda: ["models/**/*.yaml", "models/**/*.yml"],
                                 description="Glob patterns of manifest files, relative to the repository root.")
    environments: list[EnvironmentConfig] = Field(
        default_factory=lambda: [EnvironmentConfig(name="staging"),
                                 EnvironmentConfig(name="production", protected=True,
                                                   approvals=ApprovalRule(count=1, owners=True))],
        description="Environments in promotion order: earlier ones are deployed and healthy first.")
    policies: PolicyConfig = Field(default_factory=PolicyConfig)
    approval_policy: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    prune: bool = Field(True, description="When a merged pull request deletes a manifest (or one of its "
                                          "environments), remove the model from that environment's cluster "
                                          "(a decommission rollout); false: remove it by hand.")
    command_teams: dict[str, list[Annotated[str, Field(pattern=OWNER)]]] = Field(
        default_factory=dict,
        description="Per command (deploy, rollback, unlock, plan), teams whose members may run it "
                    "besides people with write access, e.g. {deploy: ['@acme/ml-platform']}.")

    @model_validator(mode="after")
    def _unique(self) -> "RepoConfig":
        names = [e.name for e in self.environments]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"environment listed twice: {', '.join(sorted(dup))}")
        return self

    def environment(self, name: str) -> EnvironmentConfig | None:
        return next((e for e in self.environments if e.name == name), None)

    def prunes(self, name: str) -> bool:
        """Whether a deleted deployment in environment ``name`` is removed after merge (the environment's
        ``prune``, else the repository's)."""
        env = self.environment(name)
        return env.prune if env is not None and env.prune is not None else self.prune

    def order(self, name: str) -> int:
        """Position in the promotion order; unknown environments go last."""
        for i, env in enumerate(self.environments):
            if env.name == name:
                return i
        return len(self.environments)

    def is_manifest(self, path: str) -> bool:
        return any(_glob_match(path, pattern) for pattern in self.manifests)


def _glob_match(path: str, pattern: str) -> bool:
    """``**`` matches any number of folders (including none), ``*`` stays within one."""
    if "**/" in pattern:
        head, _, tail = pattern.partition("**/")
        if not path.startswith(head):
            return False
        rest = path[len(head):]
        parts = rest.split("/")
        return any(_glob_match("/".join(parts[i:]), tail) for i in range(len(parts)))
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")


DEFAULT = RepoConfig()


def parse_config(raw: bytes | str | None, file: str = CONFIG_FILE) -> tuple[RepoConfig, list[Finding]]:
    """The config, or the defaults plus findings that say why the file was not usable."""
    if raw is None:
        return DEFAULT, []
    try:
        docs = load_documents(raw)
    except YamlError as exc:
        return DEFAULT, [Finding("config", Severity.ERROR, exc.message, file, exc.position, hint=exc.hint)]
    if not docs:
        return DEFAULT, []
    if len(docs) > 1 or not isinstance(docs[0].data, dict):
        return DEFAULT, [Finding("config", Severity.ERROR, "expected one mapping", file, docs[0].start)]
    try:
        return RepoConfig.model_validate(docs[0].data), []
    except ValidationError as exc:
        findings = validation_findings(file, docs[0], exc)
        return DEFAULT, [Finding("config", f.severity, f.message, f.file, f.position, hint=f.hint) for f in findings]
