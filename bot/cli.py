"""The ``modelherd`` command line. Each command is a thin shell over the same core the app uses.

User mistakes (a bad manifest, an unknown revision, an unreadable settings file) end with one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from modelherd.checks import Finding, Severity
from modelherd.clock import parse_rfc3339, rfc3339, utcnow

FORMATS = ("text", "json", "github")


class UserError(click.ClickException):
    """An error that is the user's to fix: printed as one line, exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelherd")
def main() -> None:
    """modelherd: model manifests validated, policy-checked, metric-gated, planned and deployed."""


# ---------------------------------------------------------------- validate
def _manifest_files(paths: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                                and p.name != ".modelherd.yaml"))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{raw}: no such file or directory")
    return files


def _configured_files(root: Path) -> list[Path]:
    from modelherd.repoconfig import CONFIG_FILE, parse_config

    cfg_path = root / CONFIG_FILE
    config, findings = parse_config(cfg_path.read_bytes() if cfg_path.exists() else None)
    if findings:
        raise UserError(findings[0].one_line())
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and config.is_manifest(p.relative_to(root).as_posix()))


def _github_annotation(f: Finding) -> str:
    def prop(s: str) -> str:
        return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")

    def data(s: str) -> str:
        return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    level = {"error": "error", "warning": "warning"}.get(f.severity, "notice")
    props = []
    if f.file:
        props.append(f"file={prop(f.file)}")
    if f.position:
        props += [f"line={f.position.line}", f"col={f.position.column}"]
    props.append(f"title={prop('modelherd ' + f.check)}")
    message = f.message + (f" (hint: {f.hint})" if f.hint else "")
    return f"::{level} {','.join(props)}::{data(message)}"


def _finding_json(f: Finding) -> dict:
    return {"file": f.file, "line": f.position.line if f.position else None,
            "column": f.position.column if f.position else None, "severity": str(f.severity),
            "check": f.check, "message": f.message, "hint": f.hint, "model": f.model}


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: file:line:column lines; json: a list; github: GitHub Actions annotations.")
def validate(paths: tuple[str, ...], fmt: str) -> None:
    """Check manifest files (or folders of them) against the schema.

    Without PATHS, checks the files that .modelherd.yaml in the current folder names. Exit status 1
    when any file has an error.
    """
    from modelherd.loading import load_files

    files = _manifest_files(paths) if paths else _configured_files(Path.cwd())
    contents = {}
    for path in files:
        try:
            contents[str(path)] = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{path}: {exc.strerror}") from None
    side = load_files(contents)
    findings = side.findings
    if fmt == "json":
        click.echo(json.dumps({"files": len(files), "manifests": len(side.manifests),
                               "findings": [_finding_json(f) for f in findings]}, indent=2))
    elif fmt == "github":
        for f in findings:
            click.echo(_github_annotation(f))
    else:
        for f in findings:
            click.echo(f.one_line(), err=True)
        errors = sum(1 for f in findings if f.severity is Severity.ERROR)
        click.echo(f"{len(side.manifests)} manifest(s) in {len(files)} file(s): "
                   + (f"{errors} error(s)" if errors else "valid"))
    if any(f.severity is Severity.ERROR for f in findings):
        sys.exit(1)


# ---------------------------------------------------------------- schema
@main.command()
def schema() -> None:
    """Print the manifest's JSON Schema (for yaml-language-server and other editors)."""
    from modelherd.manifest import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


# ---------------------------------------------------------------- plan
def _now(value: str | None) -> str:
    """``--now`` as RFC 3339 UTC (the real clock when not given)."""
    if not value:
        return rfc3339(utcnow())
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError:
        raise UserError(f"--now {value!r} is not an RFC 3339 time") from None


def _settings(path: str | None):
    from modelherd.settings import load_settings
    from pydantic import ValidationError

    try:
        return load_settings(path)
    except (OSError, ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"settings: {first}") from None


def _registries(settings):
    from modelherd.registry.mlflow import MlflowRegistry

    return {name: MlflowRegistry(cfg) for name, cfg in settings.registries.items()}


RULES_HELP = ("The revision whose rules (.modelherd.yaml, policies) apply. Default: the tip of the default "
              "branch (origin/HEAD's, else main or master), as the app reads them.")


def rules_revision(source: Any, rules: str | None) -> str:
    """The commit whose rules a local plan applies: ``--rules``, else the default branch's tip."""
    from modelherd.forges.base import SourceError

    if rules:
        return source.resolve(rules)
    try:
        return source.default_branch_tip().sha
    except SourceError as exc:
        raise UserError(f"{exc}: name the revision whose rules apply with --rules") from None


@main.command()
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="A local git repository.")
@click.option("--base", required=True, help="The base revision (e.g. main).")
@click.option("--head", default="HEAD", show_default=True, help="The revision to plan.")
@click.option("--rules", help=RULES_HELP)
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False, exists=True),
              help="Server settings file (registries, clusters). Default: $MODELHERD_CONFIG.")
@click.option("--now", help="Evaluate time-based policies at this RFC 3339 time instead of now.")
def plan(repo: str, base: str, head: str, rules: str | None, fmt: str, settings_path: str | None,
         now: str | None) -> None:
    """Plan a change between two revisions of a local repository, as the PR comment would show it.

    Exit status: 0 when the change may deploy, 1 when a check fails, 2 when a check could not run.
    """
    from modelherd.checks import Conclusion
    from modelherd.comment import render_plan
    from modelherd.forges.base import SourceError
    from modelherd.forges.localgit import LocalGit
    from modelherd.plan import plan_to_dict
    from modelherd.planner import PlanContext, build_plan

    settings = _settings(settings_path)
    ctx = PlanContext(registries=_registries(settings), clusters=settings.cluster_facts(), now=_now(now))
    source = LocalGit(repo)
    try:
        result = build_plan(source, source.resolve(base), source.resolve(head), ctx,
                            rules_ref=rules_revision(source, rules))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(plan_to_dict(result), indent=2, default=str))
    else:
        click.echo(render_plan(result))
    sys.exit({Conclusion.FAILURE: 1, Conclusion.ERROR: 2}.get(result.conclusion, 0))


# ---------------------------------------------------------------- policy test
@main.group()
def policy() -> None:
    """Policy-as-code helpers."""


def _rego_files(root: Path, entries: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(policies, tests) under the configured policy paths of a working tree."""
    modules, tests = [], []
    for entry in entries:
        path = root / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.rego")) if path.is_dir() else []
        for f in files:
            item = (f.relative_to(root).as_posix(), f.read_text(encoding="utf-8"))
            (tests if f.name.endswith("_test.rego") else modules).append(item)
    return modules, tests


@policy.command("test")
@click.argument("repo", default=".", type=click.Path(file_okay=False, exists=True))
@click.option("--bundle", is_flag=True, help="Run the tests of modelherd's default bundle instead.")
def policy_test(repo: str, bundle: bool) -> None:
    """Run the *_test.rego files of a repository (its .modelherd.yaml policy paths), like `opa test`."""
    from modelherd.checks.policy import (
        default_modules,
        default_test_modules,
        run_policy_tests,
    )
    from modelherd.repoconfig import CONFIG_FILE, parse_config

    root = Path(repo)
    cfg = root / CONFIG_FILE
    config, findings = parse_config(cfg.read_bytes() if cfg.exists() else None)
    if findings:
        raise UserError(findings[0].one_line())
    if bundle:
        modules, tests, data = default_modules(), default_test_modules(), {}
    else:
        modules, tests = _rego_files(root, config.policies.paths)
        if config.policies.default_bundle:
            modules = default_modules() + modules
        data = config.policies.data
    if not tests:
        raise UserError(f"no *_test.rego files under {', '.join(config.policies.paths)}")
    results = run_policy_tests(modules, tests, data)
    for r in results:
        line = f"{'PASS' if r.passed else 'FAIL'} {r.name}"
        click.echo(line + (f": {r.error}" if r.error else ""), err=not r.passed)
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------- locks
@main.command()
@click.option("--repo", "repo_name", help="Only this repository (owner/name).")
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False, exists=True),
              help="Server settings file (for database_url). Default: $MODELHERD_CONFIG.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def locks(repo_name: str | None, settings_path: str | None, fmt: str) -> None:
    """List the model/environment locks pull requests hold."""
    from modelherd.store import Store

    settings = _settings(settings_path)
    store = Store.from_url(settings.database_url)
    store.upgrade()
    held = store.locks(repo_name)
    if fmt == "json":
        click.echo(json.dumps([{"repo": lock.repo, "model": lock.model, "environment": lock.environment,
                                "pr": lock.pr_number, "head_sha": lock.head_sha, "author": lock.author,
                                "since": lock.created_at.isoformat()} for lock in held], indent=2))
        return
    if not held:
        click.echo("no locks")
    for lock in held:
        click.echo(f"{lock.repo}  {lock.model}/{lock.environment}  #{lock.pr_number} by {lock.author} "
                   f"at {lock.head_sha[:7]} since {lock.created_at:%Y-%m-%d %H:%M} UTC")


# ---------------------------------------------------------------- github app manifest
@main.command("github-app-manifest")
@click.option("--url", required=True, help="The public base URL of this modelherd server.")
@click.option("--name", help="The app's name on GitHub (must be unique there).")
def github_app_manifest(url: str, name: str | None) -> None:
    """Print app.yaml as the JSON GitHub's manifest flow takes, for the server at URL."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "app.yaml"
    if not path.exists():
        raise UserError("app.yaml not found: run this from a modelherd checkout")
    manifest = yaml.safe_load(path.read_text(encoding="utf-8").replace("${URL}", url.rstrip("/")))
    if name:
        manifest["name"] = name
    click.echo(json.dumps(manifest, indent=2))


# ---------------------------------------------------------------- quickstart
@main.command()
@click.option("--workdir", default=".modelherd-quickstart", show_default=True, type=click.Path(file_okay=False),
              help="Throw-away folder for the registry and the example repository.")
def quickstart(workdir: str) -> None:
    """Seed a local registry and an example repository, then show the plan a reviewer would see."""
    from modelherd.quickstart import run

    sys.exit(run(Path(workdir)))


def _attach_commands() -> None:
    """Commands that live in their feature's module."""
    from modelherd.approvals_cli import command as approvals
    from modelherd.drift_cli import command as drift
    from modelherd.history_cli import command as history
    from modelherd.server_cli import db, serve, worker

    for command in (serve, worker, db, approvals, drift, history):
        main.add_command(command)


_attach_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
