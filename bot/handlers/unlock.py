"""``/unlock [env]``: release this pull request's model/environment locks (all, or one environment's),
so another pull request can plan the same models. The PR takes them again on its next plan if they
are still free."""

from __future__ import annotations

from modelherd.commands import Command
from modelherd.escape import md_text
from modelherd.handlers.commands import CommandContext, command, decided_once


@command("unlock")
def unlock(ctx: CommandContext, cmd: Command) -> str:
    def release() -> str:          # the release and this answer commit together (see decided_once)
        released = ctx.store.release_locks(ctx.cr.repo, ctx.cr.number, cmd.environment)
        where = f" in {md_text(cmd.environment)}" if cmd.environment else ""
        if not released:
            return f"ℹ️ this pull request held no lock{where}"
        names = ", ".join(f"{md_text(lock.model)}/{md_text(lock.environment)}" for lock in released)
        return f"🔓 released {names}; other pull requests can plan these models now"
    return decided_once(ctx, release)
