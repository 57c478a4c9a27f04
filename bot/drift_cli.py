"""``modelherd drift``: compare what serves with what a local checkout's branch says should serve.

    modelherd drift --repo DIR [--ref REF] [--settings FILE] [--format markdown|json]

Reads the manifests and ``.modelherd.yaml`` at ``REF`` (default ``HEAD``) straight from git, resolves
versions in the registries of the settings and reads live objects from the settings' clusters (see
:mod:`modelherd.drift_scan`). Exit status: 0 no drift, 1 drift, 2 could not check (a cluster or the
registry unreachable, an unreadable manifest, a bad revision or settings file).

The command only reports: self-heal is the worker's periodic job. ``--pinned MODEL/ENV`` marks
model/environments as pinned by hand; ``--forge-repo OWNER/NAME`` reads the pins and the rollouts in
progress of that repository from the store the settings name, and names the repository whose orphans
(live objects it deployed that Git no longer declares) are listed; without it none are. Orphans do not
change the exit status.

Exported as :data:`command`; the main ``modelherd`` group attaches it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
from modelherd.clock import utcnow
from modelherd.drift import DriftReport, drift_markdown, drift_to_dict
from modelherd.drift_scan import IsPinned, pinned_pairs, scan_repo


def _user_error(message: str) -> click.ClickException:
    """A one-line error with exit status 2 (the main group's :class:`~modelherd.cli.UserError`)."""
    from modelherd.cli import (
        UserError,  # imported late: the main group imports this module
    )

    return UserError(message)


def _settings(path: str | None) -> Any:
    from modelherd.settings import load_settings

    try:
        return load_settings(path)
    except Exception as exc:  # noqa: BLE001   # OSError, ValidationError, YAML errors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _user_error(f"settings: {first}") from None


def _registries(settings: Any) -> dict[str, Any]:
    """One registry adapter per configured registry."""
    from modelherd.registry.mlflow import MlflowRegistry

    return {name: MlflowRegistry(cfg) for name, cfg in settings.registries.items()}


def _from_store(settings: Any, forge_repo: str) -> tuple[IsPinned, frozenset[tuple[str, str]], list[tuple[str, str]]]:
    """Pins, rollouts in progress and the places deployed to of ``forge_repo``, from the settings' store."""
    from modelherd.drift_scan import store_rolling
    from modelherd.store import Store

    store = Store.from_url(settings.database_url)
    try:
        pins = {(p.model, p.environment) for p in store.pins(forge_repo)}
        rolling = store_rolling(store, forge_repo)
        deployed = store.deployed_places(forge_repo)
    except Exception as exc:  # noqa: BLE001  # SQLAlchemy, driver and schema errors alike
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _user_error(f"cannot read the store ({first}); run `modelherd db upgrade`?") from None
    finally:
        store.dispose()
    return (lambda repo, model, environment: (model, environment) in pins), rolling, deployed


def _either(first: IsPinned, second: IsPinned) -> IsPinned:
    return lambda repo, model, environment: first(repo, model, environment) or second(repo, model, environment)


def run(repo: str, ref: str, settings: Any, *, registries: Mapping[str, Any] | None = None,
        is_pinned: IsPinned | None = None, rolling: frozenset[tuple[str, str]] = frozenset(),
        forge_repo: str = "", deployed: list[tuple[str, str]] | None = None) -> DriftReport:
    """Scan the local repository ``repo`` at ``ref`` against the settings' clusters."""
    from modelherd.forges.base import SourceError
    from modelherd.forges.localgit import LocalGit
    from modelherd.targets.factory import Targets

    registries = registries if registries is not None else _registries(settings)
    reader = LocalGit(repo)
    try:
        sha = reader.resolve(ref)
    except SourceError as exc:
        raise _user_error(f"{ref}: {exc}") from None
    report = scan_repo(reader, sha, registries=registries, targets=Targets(settings, registries),
                       clusters=settings.clusters, is_pinned=is_pinned, heal=None, repo=forge_repo,
                       rolling=rolling, deployed=deployed or (), now=utcnow())
    report.ref = f"{ref} ({sha[:12]})" if ref != sha else sha[:12]
    return report


@click.command("drift")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="A local git repository.")
@click.option("--ref", default="HEAD", show_default=True, help="The revision that says what should serve.")
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Server settings file (registries, clusters). Default: $MODELHERD_CONFIG.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--pinned", multiple=True, metavar="MODEL/ENV",
              help="Treat this model/environment as pinned (compared, not counted as drift). Repeatable.")
@click.option("--forge-repo", default="", metavar="OWNER/NAME",
              help="Read this repository's pins and rollouts in progress from the store, and list its orphans.")
@click.pass_context
def command(ctx: click.Context, repo: str, ref: str, settings_path: str | None, fmt: str,
            pinned: tuple[str, ...], forge_repo: str) -> None:
    """Compare live serving objects with what REF of a local repository says should serve.

    Exit status: 0 no drift, 1 drift, 2 could not check.
    """
    for pair in pinned:
        if pair.count("/") != 1 or not all(pair.split("/")):
            raise _user_error(f"--pinned {pair!r}: write MODEL/ENVIRONMENT")
    settings = _settings(settings_path)
    is_pinned, rolling, deployed = pinned_pairs(pinned), frozenset(), []
    if forge_repo:
        stored, rolling, deployed = _from_store(settings, forge_repo)
        is_pinned = _either(is_pinned, stored)
    registries = (ctx.obj or {}).get("registries") if isinstance(ctx.obj, dict) else None
    report = run(repo, ref, settings, registries=registries, is_pinned=is_pinned, rolling=rolling,
                 forge_repo=forge_repo, deployed=deployed)
    if fmt == "json":
        click.echo(json.dumps(drift_to_dict(report), indent=2))
    else:
        click.echo(drift_markdown(report, limit=10_000_000))
    ctx.exit(report.exit_code())


__all__ = ["command", "run"]
