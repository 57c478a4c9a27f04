"""``/rollback [env] [--to VERSION]``: restore, at once, the version that served before this pull request
(or ``VERSION``) in an environment, then keep Git the source of truth.

On a merged pull request modelherd opens a revert pull request that puts the manifests back as they
were before it, and pins the environment until that merges, so drift detection does not undo the
rollback. On an open pull request (after ``/deploy``) Git still says the old version, so nothing is
pinned. The rolled-back version is tagged rejected in the registry by the rollout engine.

After a merged pull request that *deleted* a manifest (a decommission), ``/rollback`` re-creates the
version that served before it (a create, nothing is tagged rejected), and the revert pull request puts
the manifest back.

A pull request into another branch than the default one never deployed (see :mod:`modelherd.handlers.deploy`):
``/rollback`` there is refused, with the reason.
"""

from __future__ import annotations

import logging

from modelherd.commands import Command
from modelherd.escape import md_code
from modelherd.forges.base import NothingToRevert
from modelherd.handlers.commands import CommandContext, command, command_key
from modelherd.handlers.plan import not_deployable
from modelherd.manifest import Deployment
from modelherd.promotion import rollout_key
from modelherd.registry import RegistryError, VersionNotFound
from modelherd.repoconfig import CONFIG_FILE, parse_config
from modelherd.rollout import rollback_to

log = logging.getLogger(__name__)


def _latest_by_model(ctx: CommandContext, env: str | None) -> tuple[str | None, dict]:
    """The environment, and per model the newest rollout this PR made there."""
    mine = ctx.store.list_rollouts(repo=ctx.cr.repo, pr_number=ctx.cr.number)   # newest first
    mine = [r for r in mine if r.trigger != "rollback"]
    env = env or (mine[0].environment if mine else None)
    latest: dict = {}
    for r in mine:
        if r.environment == env and r.model not in latest:
            latest[r.model] = r
    return env, latest


def _revert_pull(ctx: CommandContext, models: list[str], env: str, version_text: str) -> int | None:
    """Open the pull request that puts the PR's manifests back as they were before it."""
    cr, rules = ctx.cr, ctx.rules or ctx.forge.default_branch_tip()
    reader = ctx.forge.reader(cr)
    config, _ = parse_config(reader.read_many(rules.sha, [CONFIG_FILE]).get(CONFIG_FILE))
    paths = [p for p in reader.changed_files(cr.base_sha, cr.merge_sha or cr.head_sha) if config.is_manifest(p)]
    before = reader.read_many(cr.base_sha, paths)
    files = {p: (raw.decode("utf-8") if raw is not None else None) for p, raw in before.items()}
    title = f"Revert #{cr.number}: roll back {', '.join(models)} in {env} to {version_text}"
    body = (f"`/rollback` by {ctx.actor} on #{cr.number} restored {version_text} in `{env}`.\n\n"
            "This pull request puts the manifests back as they were before #"
            f"{cr.number}, so Git says what serves again; until it merges, `{env}` is pinned and drift "
            "detection leaves it alone.")
    try:
        return ctx.forge.open_revert_pull(rules.branch, files, branch=f"modelherd/revert-{cr.number}",
                                          title=title, body=body)
    except NothingToRevert:
        return None


def _choose(ctx: CommandContext, cmd: Command, env: str, latest: dict) -> list[tuple]:
    """Per model (in order): ``("line", text)`` when it is not rolled back and why, or ``("roll", model,
    dep, version, current, record)``. Reads the registries; writes nothing."""
    registries = ctx.deps["registries"]
    chosen: list[tuple] = []
    for model, record in sorted(latest.items()):
        dep = Deployment.model_validate(record.spec)
        wanted = cmd.option("to") or record.from_version
        if wanted is None and record.decommission:
            chosen.append(("line", f"- ⏭️ {md_code(model)}: the version it served in {md_code(env)} before this pull "
                                   "request is not known: revert the pull request to deploy it again"))
            continue
        if wanted is None:
            chosen.append(("line", f"- ⏭️ {md_code(model)}: there was no version before this pull request in "
                                   f"{md_code(env)}"))
            continue
        registry = registries.get(dep.model.registry)
        if registry is None:
            chosen.append(("line", f"- ❌ {md_code(model)}: registry {md_code(dep.model.registry)} is not configured"))
            continue
        try:
            version = registry.resolve(dep.model.name, version=int(wanted))
            current = None if record.decommission else registry.resolve(dep.model.name, version=int(record.to_version))
        except (RegistryError, VersionNotFound) as exc:
            chosen.append(("line", f"- ❌ {md_code(model)}: {exc}"))
            continue
        chosen.append(("roll", model, dep, version, current, record))
    return chosen


def _start(ctx: CommandContext, env: str, chosen: list[tuple]) -> dict:
    """Start the chosen rollbacks (store writes only); what the reply says of them, and their ids."""
    lines, rolled, ids = [], [], []
    for entry in chosen:
        if entry[0] == "line":
            lines.append(entry[1])
            continue
        _, model, dep, version, current, record = entry
        rollout_id = rollback_to(ctx.store, repo=ctx.cr.repo, dep=dep, version=version, current=current,
                                 actor=ctx.actor, pr=ctx.cr.number, sha=record.sha, target=record.target,
                                 reason=f"/rollback by {ctx.actor} on #{ctx.cr.number}", clock=ctx.deps["clock"],
                                 key=rollout_key(ctx.key, model, env) if ctx.key else None)
        ids.append(rollout_id)
        rolled.append([model, version.version])
        if record.decommission:
            lines.append(f"- ↩️ {md_code(model)} in {md_code(env)}: re-create v{version.version} (decommissioned "
                         f"by this pull request; rollout #{rollout_id})")
            continue
        lines.append(f"- ↩️ {md_code(model)} in {md_code(env)}: v{record.to_version} → v{version.version} "
                     f"(rollout #{rollout_id})")
    return {"lines": lines, "rolled": rolled, "ids": ids}


@command("rollback")
def rollback(ctx: CommandContext, cmd: Command) -> str:
    """Decide and start the rollbacks (recorded with them, so a retried job starts nothing again), then
    open the revert pull request (found again by its branch) and pin."""
    blocked = not_deployable(ctx.cr, ctx.rules or ctx.forge.default_branch_tip())
    if blocked:
        return f"❌ refused: {blocked}"
    env, latest = _latest_by_model(ctx, cmd.environment)
    started_key = f"{command_key(ctx.key)}:started"
    started = ctx.store.effect_result(started_key) if ctx.key else None
    if started is None:
        if not latest:
            where = f" to {md_code(env)}" if env else ""
            return f"ℹ️ nothing to roll back: this pull request has not deployed{where}"
        chosen = _choose(ctx, cmd, env, latest)
        started = (ctx.store.commit_once(started_key, lambda: _start(ctx, env, chosen)) if ctx.key
                   else _start(ctx, env, chosen))
    for rollout_id in started["ids"]:
        ctx.deps["queue"].enqueue_rollout(rollout_id)
    lines, rolled = list(started["lines"]), [(model, version) for model, version in started["rolled"]]
    if rolled and ctx.cr.state == "merged":
        versions = ", ".join(f"v{v}" for _, v in rolled)

        def open_revert() -> int | None:
            return _revert_pull(ctx, [m for m, _ in rolled], env, versions)
        revert = (ctx.store.run_once(f"{command_key(ctx.key)}:revert", open_revert) if ctx.key
                  else open_revert())
        for model, version in rolled:
            ctx.store.pin(ctx.cr.repo, model, env, version=version, actor=ctx.actor, revert_pr=revert,
                          reason=f"/rollback on #{ctx.cr.number}")
        lines.append(f"- 📌 {md_code(env)} is pinned until #{revert} (the revert pull request) merges" if revert
                     else f"- 📌 {md_code(env)} is pinned: the default branch already matches; unpin by merging a change")
    return "rolling back:\n\n" + "\n".join(lines)
