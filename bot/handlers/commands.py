"""PR comment commands: ``/plan``, ``/deploy``, ``/rollback``, ``/unlock``, ``/help``.

Only newly created comments are read (edits never run anything), and never the bot's own or another
bot's. Commands are parsed by :mod:`modelherd.commands` (start of a line only; code blocks, quotes and
HTML comments ignored; several per comment, in order). On receipt the comment gets 👀; each command
then passes its permission rule — write access to the repository (the collaborator-permission API),
or membership of a team the default branch's ``.modelherd.yaml`` allows for that command — and runs.
The default branch's tip is resolved once per comment: every command of it reads the same rules.
One reply answers all the commands of a comment, saying for each what happened or why it was refused.

Where each command is handled:

========== ==========================================
``/plan``   :mod:`modelherd.handlers.plan`
``/unlock`` :mod:`modelherd.handlers.unlock`
``/help``   here
others      registered by their feature module in :data:`COMMANDS`
========== ==========================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelherd.commands import Command, help_text, lookup, parse
from modelherd.escape import md_code
from modelherd.forges.base import BranchTip, ChangeRequest, Forge
from modelherd.repoconfig import CONFIG_FILE, DEFAULT, RepoConfig, parse_config
from modelherd.router import Router

log = logging.getLogger(__name__)
router = Router()

WRITE_ROLES = frozenset({"admin", "maintain", "write"})


@dataclass
class CommandContext:
    """What a command runs with: the PR, who asked, and the handler dependencies."""

    forge: Forge
    cr: ChangeRequest
    actor: str
    config: RepoConfig
    deps: dict[str, Any] = field(default_factory=dict)
    forge_name: str = "github"      # the event's forge: commands are spelled per forge (GitLab: /unlock-env)
    rules: BranchTip | None = None  # the default branch's tip: where ``config`` and every rule are read

    @property
    def store(self) -> Any:
        return self.deps["store"]


CommandHandler = Callable[[CommandContext, Command], str]
COMMANDS: dict[str, CommandHandler] = {}


def command(name: str) -> Callable[[CommandHandler], CommandHandler]:
    """Register the function that runs ``/name`` (it returns the Markdown reply)."""
    def decorator(fn: CommandHandler) -> CommandHandler:
        COMMANDS[name] = fn
        return fn
    return decorator


@command("help")
def show_help(ctx: CommandContext, cmd: Command) -> str:
    """``/help``: the commands as this forge spells them."""
    return help_text(ctx.forge_name)


def rules_config(forge: Forge, cr: ChangeRequest, rules: BranchTip) -> RepoConfig:
    """``.modelherd.yaml`` at the default branch's tip (an unreadable file falls back to the defaults)."""
    raw = forge.reader(cr).read_many(rules.sha, [CONFIG_FILE]).get(CONFIG_FILE)
    config, findings = parse_config(raw)
    return DEFAULT if findings else config


def permitted(ctx: CommandContext, name: str, permission: str) -> str | None:
    """None when ``ctx.actor`` may run the command, else the reason for the reply."""
    if permission == "anyone":
        return None
    role = ctx.forge.permission(ctx.actor)
    if role in WRITE_ROLES:
        return None
    for team in ctx.config.command_teams.get(name, []):
        org, _, slug = team.lstrip("@").partition("/")
        if slug and ctx.forge.team_membership(org, slug, ctx.actor) == "active":
            return None
    teams = ctx.config.command_teams.get(name, [])
    who = "write access to this repository" + (f" or membership of {', '.join(teams)}" if teams else "")
    return f"@{ctx.actor} has {role} access; `/{name}` needs {who}"


def run_one(ctx: CommandContext, cmd: Command) -> str:
    """The reply for one command: its outcome, or why it did not run."""
    echo = md_code(cmd.raw.strip() or f"/{cmd.name}")
    if cmd.name == "unknown":
        return f"{echo}: {cmd.error}\n\n{help_text(ctx.forge_name)}"
    if cmd.error:
        return f"{echo}: ❌ {cmd.error}"
    spec = lookup(cmd.name)
    handler = COMMANDS.get(spec.name if spec else cmd.name)
    if spec is None or handler is None:
        return f"{echo}: ❌ this command is not enabled on this server"
    refusal = permitted(ctx, spec.name, spec.permission)
    if refusal:
        return f"{echo}: 🚫 refused: {refusal.replace('@', '@' + chr(0x200B))}"
    return f"{echo}: {handler(ctx, cmd)}"


def is_bot(user: Mapping[str, Any]) -> bool:
    login = str(user.get("login") or "")
    return user.get("type") == "Bot" or login.endswith("[bot]")


@router.register("issue_comment", action="created")
def on_comment(event: Any, *, forge: Forge, store: Any, **deps: Any) -> None:
    """A new PR comment: run the commands in it and reply once."""
    payload = event.payload
    issue, comment = payload["issue"], payload["comment"]
    if "pull_request" not in issue or is_bot(comment.get("user") or {}):
        return
    commands = parse(comment.get("body") or "", forge=event.forge)
    if not commands:
        return
    number = int(issue["number"])
    forge.react(number, comment["id"], "eyes")
    cr = forge.change_request(number)
    rules = forge.default_branch_tip()
    ctx = CommandContext(forge, cr, comment["user"]["login"], rules_config(forge, cr, rules),
                         {"store": store, **deps}, forge_name=event.forge, rules=rules)
    replies = [run_one(ctx, cmd) for cmd in commands]
    body = "\n\n".join(replies)
    store.run_once(f"reply:{event.forge}:{event.delivery_id}", lambda: forge.create_comment(number, body),
                   event_id=event.id)
    log.info("%s#%d: %d command(s) from %s", forge.repo, number, len(commands), ctx.actor)
