"""Commands in pull-request comments (``/plan``, ``/deploy``, ``/rollback``, ``/unlock``, ``/help``): parsing.

Pure: a comment body in, a list of :class:`Command` out.  Whether a command may run (permissions), and
running it, belong to the handlers; here a command is only recognised and its arguments validated.

What counts as a command:

* a ``/name`` at the start of a line (up to three leading spaces, as Markdown allows before a
  paragraph), followed by a space or the end of the line, so ``/usr/bin/python`` or a URL is never one;
* not inside a fenced code block (```` ``` ```` or ``~~~``, any length, closed by a fence at least as
  long), an indented code block (four spaces or a tab), a block quote (``>``, including the lines a
  quoted paragraph lazily continues onto, which GitHub renders inside the quote) or an HTML comment
  (``<!-- … -->``, which hides text, as PR templates do);
* several commands in one comment are returned in order, each with its 1-based line number.

A ``/word`` that is none of ours comes back as ``Command("unknown")`` so the caller can answer with the
help text, except GitLab's built-in quick actions (``/approve``, ``/merge``, ``/assign``, …), which are
GitLab's and never answered.  GitLab has its own ``/unlock`` (it unlocks the discussion), so there our
``/unlock`` is written ``/unlock-env``; :func:`register` refuses a command that would be unusable on
GitLab for the same reason.

Arguments are validated here: environment names are DNS labels, ``--to`` is a positive whole number.
A command with bad arguments comes back with ``error`` set, so the caller replies with the reason.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ArgParser = Callable[[list[str]], tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]]

_ENV = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")      # a DNS label, as manifests require
_COMMAND = re.compile(r"^ {0,3}/([A-Za-z][A-Za-z0-9_-]*)(?=[ \t]|$)(.*)$")
_FENCE_OPEN = re.compile(r"^\s*(?:(?:[-*+]|\d{1,9}[.)])\s+)?(`{3,}|~{3,})(.*)$")
_QUOTE = re.compile(r"^ {0,3}>")
_BLOCK_START = re.compile(r"^ {0,3}(?:#{1,6}(?:\s|$)|[-*_](?:\s*[-*_]){2,}\s*$|[-*+]\s|\d{1,9}[.)]\s|>|`{3,}|~{3,}|<)")

# GitLab's built-in quick actions (docs.gitlab.com/user/project/quick_actions): GitLab runs them and
# strips them from the note, so a note made only of them never reaches us.  They are never ours and
# never answered as unknown, on either forge.
GITLAB_QUICK_ACTIONS = frozenset("""
    add_child add_contacts add_email approve assign assign_reviewer award blocked_by blocks board_move
    cc checkin_reviewer child_epic clear_health_status clear_weight clone close confidential
    convert_to_ticket copy_metadata create_merge_request done draft due duplicate epic escalate estimate
    estimate_time health_status invite_email iteration label link lock merge milestone move page
    parent_epic promote promote_to promote_to_incident publish react ready reassign reassign_reviewer
    rebase relabel relate remove_child remove_child_epic remove_contacts remove_due_date remove_email
    remove_epic remove_estimate remove_health_status remove_iteration remove_label remove_milestone
    remove_parent remove_parent_epic remove_reviewer remove_time_estimate remove_time_spent remove_zoom
    reopen request_review reviewer set_parent severity shrug spend spent status submit_review subscribe
    summarize_diff tableflip target_branch timeline title todo type unapprove unassign
    unassign_reviewer unlabel unlink unlock unsubscribe weight wip zoom
""".split())


class ArgumentError(ValueError):
    """A command's arguments are not valid; the message is shown to the user."""


@dataclass(frozen=True)
class Command:
    """One command found in a comment.

    ``args`` are the positional arguments (``("production",)``), ``options`` the ``--name value`` pairs
    (``(("to", 3),)``), ``line`` the 1-based line of the comment it was on and ``raw`` that line.
    ``error`` is set when the arguments are invalid or the command is unknown (name ``"unknown"``).
    """

    name: str
    args: tuple[str, ...] = ()
    line: int = 0
    raw: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    error: str | None = None

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    @property
    def environment(self) -> str | None:
        """The environment argument, for the commands that take one."""
        return self.args[0] if self.args else None


@dataclass(frozen=True)
class CommandSpec:
    """A command the bot knows: its name, usage, who may run it by default and its argument parser."""

    name: str
    arguments: str              # usage after the name: "[env] [--to VERSION]"
    summary: str
    permission: str             # "anyone" or "write" (write access, or a team configured for the command)
    parse_args: ArgParser
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def spelling(self, forge: str = "github") -> str:
        """The name to write on ``forge``: the first one that is not a GitLab quick action there."""
        if forge != "gitlab":
            return self.name
        return next(n for n in self.names() if n not in GITLAB_QUICK_ACTIONS)

    def usage(self, forge: str = "github") -> str:
        return f"/{self.spelling(forge)}" + (f" {self.arguments}" if self.arguments else "")


# ------------------------------------------------------------------------------------ argument parsers


def _split_options(tokens: list[str],
                   allowed: dict[str, Callable[[str], Any]]) -> tuple[list[str], list[tuple[str, Any]]]:
    """Positional tokens and validated ``--name value`` / ``--name=value`` options."""
    positional: list[str] = []
    options: dict[str, Any] = {}
    items = iter(tokens)
    for token in items:
        if not token.startswith("--"):
            positional.append(token)
            continue
        key, eq, value = token[2:].partition("=")
        if key not in allowed:
            known = ", ".join(f"--{k}" for k in allowed) or "none"
            raise ArgumentError(f"unknown option --{key} (options: {known})")
        if key in options:
            raise ArgumentError(f"--{key} is given twice")
        if not eq:
            value = next(items, "")
            if not value or value.startswith("--"):
                raise ArgumentError(f"--{key} needs a value")
        options[key] = allowed[key](value)
    return positional, list(options.items())


def environment_name(value: str) -> str:
    """An environment name: a DNS label (lower-case letters, digits and ``-``, at most 63)."""
    if not _ENV.match(value):
        raise ArgumentError(f"{value!r} is not an environment name (lower-case letters, digits and '-', "
                            "at most 63 characters)")
    return value


def positive_int(value: str) -> int:
    """A positive whole number such as a model version (``3``, not ``v3``, ``0`` or ``-1``)."""
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < 1:
        raise ArgumentError(f"{value!r} is not a version number (a whole number from 1)")
    return int(value)


def no_args(tokens: list[str]) -> tuple[tuple[str, ...], tuple]:
    """Commands without arguments refuse any, rather than silently ignore what the user meant."""
    if tokens:
        raise ArgumentError(f"takes no arguments, got {' '.join(tokens)!r}")
    return (), ()


def ignore_args(tokens: list[str]) -> tuple[tuple[str, ...], tuple]:
    return (), ()


def optional_env(options: dict[str, Callable[[str], Any]] | None = None) -> ArgParser:
    """A parser for ``[env]`` plus the given options."""
    def parse(tokens: list[str]) -> tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]:
        positional, opts = _split_options(tokens, options or {})
        if len(positional) > 1:
            raise ArgumentError(f"takes at most one environment, got {' '.join(positional)!r}")
        return tuple(environment_name(p) for p in positional), tuple(opts)
    return parse


# ------------------------------------------------------------------------------------------ the registry

REGISTRY: dict[str, CommandSpec] = {}
_BY_NAME: dict[str, CommandSpec] = {}


def register(spec: CommandSpec) -> CommandSpec:
    """Add a command.  Names must be unique, and one of them must be usable on GitLab."""
    for name in spec.names():
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise ValueError(f"command name {name!r}: lower-case letters, digits, '_' and '-' only")
        if name in _BY_NAME:
            raise ValueError(f"command /{name} is already registered")
    if all(n in GITLAB_QUICK_ACTIONS for n in spec.names()):
        raise ValueError(f"/{spec.name} is a GitLab quick action: add an alias GitLab does not use")
    REGISTRY[spec.name] = spec
    _BY_NAME.update({n: spec for n in spec.names()})
    return spec


def lookup(name: str, forge: str = "github") -> CommandSpec | None:
    """The command called ``name`` on ``forge`` (GitLab's quick actions are never ours there)."""
    name = name.lower()
    if forge == "gitlab" and name in GITLAB_QUICK_ACTIONS:
        return None
    return _BY_NAME.get(name)


register(CommandSpec("plan", "", "Plan the change again now, at the pull request's current head.", "write",
                     no_args))
register(CommandSpec("deploy", "[env]", "Deploy the planned change (to `env`, or to the next environment "
                     "in promotion order).", "write", optional_env(),
                     notes="Acts on the commit that was planned and approved; if the head moved, run /plan "
                           "first. Protected environments deploy only after merge."))
register(CommandSpec("rollback", "[env] [--to VERSION]", "Roll back to the version served before (or to "
                     "`VERSION`).", "write", optional_env({"to": positive_int})))
register(CommandSpec("unlock", "[env]", "Release this pull request's locks (all, or `env`'s) so another "
                     "pull request can plan the same models.", "write", optional_env(), aliases=("unlock-env",)))
register(CommandSpec("help", "", "Show this help.", "anyone", ignore_args))


# ------------------------------------------------------------------------------------------ scanning


@dataclass
class _Scanner:
    """Which lines of a Markdown comment are plain text at the start of a line (see the module doc)."""

    fence: tuple[str, int] | None = None     # (character, length) of the open fence
    in_comment: bool = False
    quote_paragraph: bool = False
    lines: list[tuple[int, str]] = field(default_factory=list)

    def feed(self, number: int, line: str) -> None:
        if self.fence:
            self._in_fence(line)
        elif self.in_comment:
            self.in_comment = "-->" not in line          # the rest of a closing line is HTML too
        elif _QUOTE.match(line):
            rest = _QUOTE.sub("", line, count=1).strip()
            self.quote_paragraph = bool(rest) and not _BLOCK_START.match(rest)
        elif self.quote_paragraph and line.strip() and not _BLOCK_START.match(line):
            pass                                         # lazily continues the quoted paragraph
        else:
            self.quote_paragraph = False
            self._plain(number, line)

    def _in_fence(self, line: str) -> None:
        char, length = self.fence or ("`", 3)
        stripped = line.strip()
        if stripped and set(stripped) == {char} and len(stripped) >= length:
            self.fence = None

    def _plain(self, number: int, line: str) -> None:
        opened = _FENCE_OPEN.match(line)
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            self.fence = (opened.group(1)[0], len(opened.group(1)))
            return
        visible, self.in_comment = _strip_comments(line)
        if visible.strip():
            self.lines.append((number, visible))


def _strip_comments(line: str) -> tuple[str, bool]:
    """The line without its HTML comments, and whether a comment stays open past its end.

    Code spans are blanked first, so a ```<!--``` written as code does not open a comment.
    """
    masked = re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group()), line)
    out, pos = [], 0
    while True:
        start = masked.find("<!--", pos)
        if start < 0:
            out.append(line[pos:])
            return "".join(out), False
        out.append(line[pos:start])
        end = masked.find("-->", start + 4)
        if end < 0:
            return "".join(out), True
        pos = end + 3


def command_lines(body: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of ``body`` where a command may start."""
    scanner = _Scanner()
    for number, line in enumerate(body.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        scanner.feed(number, line.replace("\t", "    "))
    yield from scanner.lines


# ------------------------------------------------------------------------------------------ parsing


def _unknown(word: str, number: int, raw: str) -> Command:
    close = difflib.get_close_matches(word.lower(), list(_BY_NAME), n=1)
    hint = f" (did you mean /{close[0]}?)" if close else ""
    return Command("unknown", (word,), number, raw, error=f"unknown command /{word}{hint}")


def parse_line(number: int, line: str, forge: str = "github") -> Command | None:
    """The command on one plain line, or None when the line holds none (or a GitLab quick action)."""
    found = _COMMAND.match(line)
    if not found:
        return None
    word, rest = found.group(1), found.group(2)
    raw = line.strip()
    spec = lookup(word, forge)
    if spec is None:
        return None if word.lower() in GITLAB_QUICK_ACTIONS else _unknown(word, number, raw)
    try:
        args, options = spec.parse_args(rest.split())
    except ArgumentError as exc:
        return Command(spec.name, tuple(rest.split()), number, raw, error=f"{spec.usage(forge)}: {exc}")
    return Command(spec.name, args, number, raw, options)


def parse(body: str, *, forge: str = "github") -> list[Command]:
    """Every command in a comment body, in order (see the module doc for the rules)."""
    found = (parse_line(number, line, forge) for number, line in command_lines(body or ""))
    return [c for c in found if c is not None]


# ------------------------------------------------------------------------------------------ help

_PERMISSION = {"anyone": "anyone",
               "write": "people with write access (or a team the repository configures for it)"}


def help_text(forge: str = "github") -> str:
    """The commands as Markdown: usage, what each does and who may run it."""
    rows = ["| Command | What it does | Who may run it |", "|---|---|---|"]
    for spec in REGISTRY.values():
        what = spec.summary + (f" {spec.notes}" if spec.notes else "")
        rows.append(f"| `{spec.usage(forge)}` | {what} | {_PERMISSION.get(spec.permission, spec.permission)} |")
    return "\n".join([
        "#### modelherd commands",
        "",
        ("Write a command at the start of a line in a new comment; several commands run in order. "
         "Commands in code blocks, quotes, HTML comments or edited comments are ignored."),
        "",
        *rows,
    ])
