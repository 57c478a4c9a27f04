"""The planner: one pull request (base → head) in, one :class:`~modelherd.plan.Plan` out.

This is the only place where the core meets its adapters, and it receives all of them: the repository
reader (GitHub, GitLab or a local checkout), the registries, the cluster facts, the PR facts and the
time.  Everything it calls with that data — loading, diffing, rendering, policies, gates — is pure.

Rules — ``.modelherd.yaml`` and the repository's Rego policies — are read at the revision the caller
names, the default branch's tip (the handlers resolve it once per event); never at the head.
Only the files the change touches are read, so a plan costs the same in a repository of ten manifests
as in one of ten thousand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from modelherd.checks import CheckResult, Conclusion, Finding, Severity, conclude
from modelherd.checks.metrics import evaluate_gates, gate_findings, readiness_finding
from modelherd.checks.policy import PolicyEngine, PolicyError, default_modules, policy_input, to_findings
from modelherd.forges.base import RevisionReader
from modelherd.loading import load_files
from modelherd.locate import locator
from modelherd.manifest import Deployment
from modelherd.plan import Action, ApprovalRequirement, Change, ChangeReport, Plan, changes
from modelherd.registry import CachedResolver, ModelVersionInfo, Registry, RegistryError, VersionNotFound
from modelherd.render import RenderError, render
from modelherd.repoconfig import CONFIG_FILE, RepoConfig, parse_config
from modelherd.yamldiff import diff

CHECKS = ("schema", "policy", "metrics")


@dataclass
class PlanContext:
    """Everything outside the repository that a plan depends on."""

    registries: Mapping[str, Registry]
    clusters: Mapping[str, dict[str, Any]]          # name → facts (Settings.cluster_facts())
    now: str                                        # RFC 3339, UTC
    pr: dict[str, Any] | None = None                # number, author, title, base_ref, head_sha, labels
    repository: str | None = None                   # owner/name on the forge: rendered as rollouts apply it


@lru_cache(maxsize=32)
def _engine(modules: tuple[tuple[str, str], ...], data_json: str) -> PolicyEngine:
    return PolicyEngine(list(modules), json.loads(data_json))


def policy_engine(config: RepoConfig, repo_modules: list[tuple[str, str]]) -> PolicyEngine:
    """The compiled policies for a repository, cached by content (compiling is the slow part)."""
    modules = (default_modules() if config.policies.default_bundle else []) + repo_modules
    return _engine(tuple(modules), json.dumps(config.policies.data, sort_keys=True))


def read_repo_policies(source: RevisionReader, ref: str, config: RepoConfig) -> list[tuple[str, str]]:
    """The repository's own ``.rego`` files at ``ref`` (where the rules are read), tests excluded."""
    paths: list[str] = []
    for entry in config.policies.paths:
        if entry.endswith(".rego"):
            paths.append(entry)
        else:
            paths.extend(p for p in source.list_files(ref, entry)
                         if p.endswith(".rego") and not p.endswith("_test.rego"))
    found = source.read_many(ref, paths)
    return [(p, raw.decode("utf-8", errors="replace")) for p, raw in found.items() if raw is not None]


def _registry_facts(report: ChangeReport, resolve: CachedResolver, locate) -> None:
    change = report.change
    if change.head is not None:
        try:
            report.candidate = resolve(change.head.model)
        except RegistryError as exc:
            report.registry_error = str(exc)
        except VersionNotFound as exc:
            report.findings.append(Finding("metrics", Severity.ERROR, str(exc), change.file,
                                           locate(("model",)), change.name, change.environment,
                                           hint="check the model name and version in the registry"))
    if change.base is not None:
        try:
            report.current = resolve(change.base.model)
        except RegistryError as exc:
            report.registry_error = report.registry_error or str(exc)
        except VersionNotFound:
            report.current = None   # what served before is gone from the registry: nothing to compare


def _version_label(dep, info: ModelVersionInfo | None) -> str | None:
    if dep is None:
        return None
    if info is not None:
        return info.version
    return str(dep.model.version) if dep.model.version is not None else f"@{dep.model.alias}"


def _render_and_diff(report: ChangeReport, repository: str | None, locate) -> None:
    """The objects before and after, as the rollout engine applies them (with the deploying repository).

    Loading refuses every manifest that cannot render; what is left is registry data no server can
    serve (a ``models:/`` storage URI): a finding on the model line, never an exception."""
    change = report.change
    try:
        if change.base is not None:
            report.rendered_before = render(_deployed_by(change.base, repository), report.current)
        if change.head is not None:
            report.rendered_after = render(_deployed_by(change.head, repository), report.candidate)
    except RenderError as exc:
        report.findings.append(Finding("schema", Severity.ERROR, f"the serving objects cannot be rendered: {exc}",
                                       change.file, locate(("model",)), change.name, change.environment,
                                       hint="fix the manifest or the registry entry it points at"))
    report.diff = diff(report.rendered_before, report.rendered_after,
                       before_name=f"{change.base_file or '/dev/null'} ({change.environment}, base)",
                       after_name=f"{change.file} ({change.environment}, head)")


def _deployed_by(dep: Deployment, repository: str | None) -> Deployment:
    return dep.model_copy(update={"repository": repository}) if repository else dep


def _config_approvals(change: Change, config: RepoConfig) -> list[ApprovalRequirement]:
    env = config.environment(change.environment)
    if env is None or env.approvals is None or env.approvals.count == 0 or change.action is Action.NOOP:
        return []
    rule = env.approvals
    return [ApprovalRequirement(change.environment, rule.count, f"{CONFIG_FILE}: environment {env.name}",
                                tuple(rule.users), tuple(rule.teams), rule.owners)]


def merge_approvals(requirements: list[ApprovalRequirement]) -> list[ApprovalRequirement]:
    """One requirement per environment and set of approvers: the largest count, every reason kept."""
    merged: dict[tuple, ApprovalRequirement] = {}
    for req in requirements:
        key = (req.environment, req.users, req.teams, req.owners)
        if key in merged:
            prev = merged[key]
            reasons = prev.reason if req.reason in prev.reason else f"{prev.reason}; {req.reason}"
            merged[key] = ApprovalRequirement(req.environment, max(prev.count, req.count), reasons,
                                              req.users, req.teams, req.owners)
        else:
            merged[key] = req
    return list(merged.values())


def _unknown_environment(change: Change, config: RepoConfig, locate) -> list[Finding]:
    if config.environment(change.environment) is not None or change.action is Action.DELETE:
        return []
    known = ", ".join(e.name for e in config.environments)
    return [Finding("schema", Severity.ERROR, f"environment {change.environment!r} is not in {CONFIG_FILE}",
                    change.file, locate(("environment",)), change.name, change.environment,
                    hint=f"use one of: {known}, or add it to {CONFIG_FILE} (on the default branch first)")]


def _check(name: str, findings: list[Finding], ok: str, error: str | None = None) -> CheckResult:
    mine = [f for f in findings if f.check == name]
    if error:
        return CheckResult(name, Conclusion.ERROR, error, tuple(mine))
    return conclude(name, mine, ok)


def build_plan(source: RevisionReader, base: str, head: str, ctx: PlanContext, *,
               rules_ref: str | None = None) -> Plan:
    """Plan the change from ``base`` to ``head``: what would deploy where, and whether it may.

    The rules (``.modelherd.yaml`` and the repository's policies) are read at ``rules_ref`` — the
    default branch's tip, so a rule changed there applies to every open pull request at once, whatever
    its base — and at ``base`` when the caller has none; never at ``head``. The manifests are read at
    ``base`` and ``head``.
    """
    rules_at = rules_ref or base
    config_raw = source.read_many(rules_at, [CONFIG_FILE]).get(CONFIG_FILE)
    config, config_findings = parse_config(config_raw)
    touched = [p for p in source.changed_files(base, head) if config.is_manifest(p)]
    base_side = load_files(source.read_many(base, touched))
    head_side = load_files(source.read_many(head, touched))
    head_by_name, base_by_name = head_side.by_name(), base_side.by_name()
    file_findings = [*config_findings, *head_side.findings]
    config_error_findings = [Finding("schema", f.severity, f.message, f.file, f.position, hint=f.hint)
                             for f in config_findings]

    # A file that does not load at head says nothing about what it wants: its models are not deleted.
    unknown = {lm.manifest.metadata.name for lm in base_side.manifests
               if lm.file in head_side.broken_files and lm.manifest.metadata.name not in head_by_name}
    before = [lm for lm in base_side.manifests if lm.manifest.metadata.name not in unknown]
    reports = [ChangeReport(c) for c in changes(before, head_side.manifests, order=config.order)]
    resolve = CachedResolver(ctx.registries)
    live = [r for r in reports if r.change.action is not Action.NOOP]

    for report in live:
        change = report.change
        locate = locator(head_by_name.get(change.name) or base_by_name.get(change.name), change.environment)
        report.findings.extend(_unknown_environment(change, config, locate))
        _registry_facts(report, resolve, locate)
        _render_and_diff(report, ctx.repository, locate)
        if change.head is not None and report.registry_error is None:
            report.metrics = evaluate_gates(change.head.gates, report.candidate, report.current)
            report.findings.extend(gate_findings(report.metrics, file=change.file, model=change.name,
                                                 environment=change.environment, locate=locate))
            ready = readiness_finding(change.head.gates, report.candidate, file=change.file, model=change.name,
                                      environment=change.environment, locate=locate)
            if ready is not None:
                report.findings.append(ready)
        report.approvals.extend(_config_approvals(change, config))

    policy_error = None
    try:
        engine = policy_engine(config, read_repo_policies(source, rules_at, config))
        inputs = [policy_input(r.change, environment_config=config.environment(r.change.environment),
                               order=config.order(r.change.environment),
                               cluster_facts=ctx.clusters.get(r.change.deployment.cluster),
                               candidate=r.candidate, current=r.current, pr=ctx.pr, now=ctx.now)
                  for r in live]
        for report, decision in zip(live, engine.evaluate_many(inputs)):
            change = report.change
            locate = locator(head_by_name.get(change.name) or base_by_name.get(change.name), change.environment)
            report.findings.extend(to_findings(decision, file=change.file, model=change.name,
                                               environment=change.environment, locate=locate))
            report.approvals = merge_approvals([*report.approvals, *decision.approvals])
    except PolicyError as exc:
        policy_error = f"the policies could not be evaluated: {exc}"

    all_findings = [*config_error_findings, *head_side.findings]
    for r in reports:
        all_findings.extend(r.findings)
    registry_errors = sorted({r.registry_error for r in reports if r.registry_error})
    registry_error = f"the registry could not be reached: {registry_errors[0]}" if registry_errors else None
    checks = {
        "schema": _check("schema", all_findings, f"{len(touched)} manifest file(s) valid"),
        "policy": _check("policy", all_findings, f"{len(live)} change(s) allowed by policy", policy_error),
        "metrics": _check("metrics", all_findings, f"{len(live)} change(s) pass their gates", registry_error),
    }
    if not touched:
        checks = {name: CheckResult(name, Conclusion.NEUTRAL, "no model manifest changed") for name in CHECKS}
    return Plan(base_ref=base, head_ref=head, reports=reports, checks=checks, files=touched,
                file_findings=file_findings, config=config)

