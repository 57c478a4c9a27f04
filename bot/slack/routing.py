"""Which Slack channel an event goes to, pure.

Routing comes from up to three scopes, most specific first:

1. the repository's own config (``slack:`` in ``.modelherd.yaml``, when the repo config carries it),
2. the server's per-repository entry (``slack.repos["owner/name"]``),
3. the server's settings (``slack.default_channel`` and ``slack.channels``).

Any scope with ``enabled: false`` mutes the repository: nothing is sent.  Otherwise the most specific
*rule* wins, looked up scope by scope: the event kind (``channels.kinds``), then one of the model's
owner teams (``channels.teams``, ``@org/team`` with or without the ``@``, case-insensitive), then the
environment (``channels.environments``), then ``default_channel``.  No match: nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from modelherd.settings import SlackRouting, SlackSettings
from modelherd.slack.messages import SlackEvent

Rule = Callable[[SlackRouting, SlackEvent], str | None]


def team_key(name: str) -> str:
    """``@Acme/Risk-ML`` and ``acme/risk-ml`` are the same team."""
    return name.strip().lstrip("@").lower()


def teams_of(owners: Iterable[str]) -> list[str]:
    """The owners that are teams (``org/team``), normalised, in order."""
    return [team_key(o) for o in owners if "/" in o]


def by_kind(scope: SlackRouting, event: SlackEvent) -> str | None:
    return scope.channels.kinds.get(str(event.kind))


def by_team(scope: SlackRouting, event: SlackEvent) -> str | None:
    teams = {team_key(k): v for k, v in scope.channels.teams.items()}
    return next((teams[t] for t in teams_of(event.owners) if t in teams), None)


def by_environment(scope: SlackRouting, event: SlackEvent) -> str | None:
    if not event.environment:
        return None
    envs = {k.lower(): v for k, v in scope.channels.environments.items()}
    return envs.get(event.environment.lower())


def by_default(scope: SlackRouting, event: SlackEvent) -> str | None:
    return scope.default_channel


RULES: tuple[Rule, ...] = (by_kind, by_team, by_environment, by_default)


def scopes(server: SlackSettings | None, repo_config: SlackRouting | None, repo: str) -> list[SlackRouting]:
    """The routing scopes for ``repo``, most specific first (empty when Slack is not configured)."""
    if server is None:
        return []
    per_repo = _lookup_repo(server.repos, repo)
    return [s for s in (repo_config, per_repo, server) if s is not None]


def _lookup_repo(repos: dict[str, SlackRouting], repo: str) -> SlackRouting | None:
    """``repos[repo]``, matching owner/name case-insensitively as forges do."""
    wanted = repo.lower()
    return next((v for k, v in repos.items() if k.lower() == wanted), None)


def route(event: SlackEvent, server: SlackSettings | None, repo_config: SlackRouting | Any = None) -> str | None:
    """The channel for ``event``, or ``None`` to send nothing (see the module docstring).

    ``repo_config`` is the repository's routing (a :class:`SlackRouting` or a mapping of the same shape,
    e.g. the ``slack`` section of ``.modelherd.yaml``); ``None`` when it has none.
    """
    if repo_config is not None and not isinstance(repo_config, SlackRouting):
        repo_config = SlackRouting.model_validate(repo_config)
    layers = scopes(server, repo_config, event.repo)
    if not layers or any(not layer.enabled for layer in layers):
        return None
    for rule in RULES:
        for layer in layers:
            channel = rule(layer, event)
            if channel:
                return channel
    return None


__all__ = ["RULES", "route", "scopes", "team_key", "teams_of"]
