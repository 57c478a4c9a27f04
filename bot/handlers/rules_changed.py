"""When the rules themselves change, open pull requests are planned again.

The rules are read at the default branch's tip: ``.modelherd.yaml`` and the repository's policies. A
push to the default branch that touches them changes what every open pull request needs (whatever its
base), so each is planned again, all with the one tip resolved for the event (its checks and comment
follow). A team's membership changing (``membership`` added/removed) can satisfy or unsatisfy
approval rules: the open pull requests of every repository that installation serves are planned again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from modelherd.handlers.drift import default_branch_push
from modelherd.handlers.plan import refresh_serialised
from modelherd.repoconfig import CONFIG_FILE, parse_config
from modelherd.router import Router

log = logging.getLogger(__name__)
router = Router()


def touched_paths(payload: Mapping[str, Any]) -> set[str]:
    """Every path a push's commits added, modified or removed."""
    paths: set[str] = set()
    for commit in payload.get("commits") or []:
        for key in ("added", "modified", "removed"):
            paths.update(commit.get(key) or [])
    return paths


def rules_touched(paths: Iterable[str], policy_paths: Iterable[str]) -> bool:
    """Whether ``paths`` include ``.modelherd.yaml`` or a file under the repository's policy paths."""
    folders = [p.rstrip("/") for p in policy_paths]
    return any(path == CONFIG_FILE or any(path == f or path.startswith(f + "/") for f in folders) for path in paths)


def replan_open(forge: Any, deps: Mapping[str, Any], why: str) -> list[int]:
    """Plan every open pull request of the repository again, with the rules at the default branch's tip
    (resolved once)."""
    numbers = forge.open_pulls()
    rules = forge.default_branch_tip() if numbers else None
    for number in numbers:
        refresh_serialised(forge, number, **{**deps, "rules": rules})
    log.info("%s: %s: re-planned %s", forge.repo, why, numbers)
    return numbers


@router.register("push")
def on_rules_pushed(event: Any, *, forge: Any, **deps: Any) -> None:
    """The default branch's rules changed: what open PRs need may have changed too."""
    sha = default_branch_push(event.payload)
    if not sha:
        return
    paths = touched_paths(event.payload)
    if CONFIG_FILE in paths:
        replan_open(forge, deps, f"{CONFIG_FILE} changed at {sha[:7]}")
        return
    config, _ = parse_config(forge.reader().read_many(sha, [CONFIG_FILE]).get(CONFIG_FILE))
    if rules_touched(paths, config.policies.paths):
        replan_open(forge, deps, f"policies changed at {sha[:7]}")


@router.register("membership")
def on_membership(event: Any, *, store: Any, forge_for: Any = None, **deps: Any) -> None:
    """A team's members changed: approvals that name the team may now be met, or no longer."""
    if forge_for is None or event.installation_id is None:
        return
    for repo in store.repos_of_installation("github", event.installation_id):
        forge = forge_for(event.installation_id, repo)
        if forge is not None:
            replan_open(forge, {"store": store, **deps}, "team membership changed")
