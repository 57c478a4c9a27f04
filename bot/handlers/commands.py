"""PR comment commands: ``/plan``, ``/deploy``, ``/rollback``, ``/unlock``, ``/help``.

Only newly created comments are read (edits never run anything), and never the bot's own or another
bot's. Commands are parsed by :mod:`modelherd.commands` (start of a line only; code blocks, quotes and
HTML comments ignored; several per comment, in order). On receipt the comment gets 👀; each command
then passes its permission rule — write access to the repository (the collaborator-permission API),
or membership of a team the default branch's ``.modelherd.yaml`` allows for that command — and runs.
The default branch's tip is resolved once per comment: every command of it reads the same rules.
One reply answers all the commands of a comment, saying for each what happened or why it was refused.

Each command runs once per delivery, whatever fails in between (the job is retried after a 5xx, a
timeout or a killed worker). Its key is the delivery and its index in the comment
(:attr:`CommandContext.key`); what it answered is recorded under ``command:<key>`` and a retry gives
the same answer without running it again. A command whose effects live in the store (rollouts
started, locks released) makes them and records its answer in one transaction
(:func:`decided_once`), so a retry never finds the effects without the answer; an effect on the forge
(the ``/rollback`` revert request) is found again by its branch. The reply carries a hidden marker
naming the delivery: a retry whose first attempt may have posted it finds it and edits it instead of
posting a second one.

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
from dataclasses import dataclass, field, replace
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
    key: str = ""                   # this command's idempotency key: forge, delivery, index in the comment

    @property
    def store(self) -> Any:
        return self.deps["store"]


def command_key(key: str) -> str:
    """Where a command's answer is recorded (its effects in the store commit with it)."""
    return f"command:{key}"


def decided_once(ctx: CommandContext, action: Callable[[], str]) -> str:
    """Run ``action`` — the command's store writes, returning its answer — and record the answer in the
    same transaction, unless this command's answer is already recorded (then that answer).

    ``action`` makes store calls only; what it reads from the forge or a registry is read before."""
    if not ctx.key:
        return action()
    return ctx.store.commit_once(command_key(ctx.key), action)


def reply_marker(forge_name: str, delivery_id: str) -> str:
    """The hidden marker of the reply to one delivery's commands."""
    safe = "".join(ch for ch in delivery_id if ch.isalnum() or ch in "-_.")[:100]
    return f"<!-- modelherd:reply:{forge_name}:{safe} -->"


def post_once(store: Any, forge: Forge, number: int, key: str, marker: str, body: str, *,
              event_id: int | None = None) -> Any:
    """Post ``body`` (with its hidden ``marker``) on PR ``number`` once for ``key``.

    The first attempt creates the comment; a later one (the first may have been carried out by the
    forge without its answer reaching us) looks for the comment holding ``marker`` and edits it, or
    creates it if there is none. The id is recorded under ``key``."""
    body = body if marker in body else f"{marker}\n{body}"

    def post() -> Any:
        if store.once(f"{key}:tried", event_id=event_id):
            return forge.create_comment(number, body)
        return forge.upsert_comment(number, marker, body)

    return store.run_once(key, post, event_id=event_id)


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
    if ctx.key and ctx.store.has_effect(command_key(ctx.key)):    # ran before the job was retried
        return f"{echo}: {ctx.store.effect_result(command_key(ctx.key))}"
    refusal = permitted(ctx, spec.name, spec.permission)
    if refusal:
        return f"{echo}: 🚫 refused: {refusal.replace('@', '@' + chr(0x200B))}"
    if not ctx.key:
        return f"{echo}: {handler(ctx, cmd)}"
    return f"{echo}: {ctx.store.run_once(command_key(ctx.key), lambda: handler(ctx, cmd))}"


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
    delivery = f"{event.forge}:{event.delivery_id}"
    replies = [run_one(replace(ctx, key=f"{delivery}:{index}"), cmd) for index, cmd in enumerate(commands)]
    body = "\n\n".join(replies)
    post_once(store, forge, number, f"reply:{delivery}", reply_marker(event.forge, event.delivery_id), body,
              event_id=event.id)
    log.info("%s#%d: %d command(s) from %s", forge.repo, number, len(commands), ctx.actor)
