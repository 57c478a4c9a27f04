"""Parsing PR-comment commands: what is a command, what is hidden, and argument validation."""

from __future__ import annotations

import pytest

from modelherd.commands import (
    GITLAB_QUICK_ACTIONS, REGISTRY, Command, CommandSpec, help_text, lookup, no_args, parse, register,
)


def names(body: str, **kw) -> list[str]:
    return [c.name for c in parse(body, **kw)]


def test_each_command_with_its_arguments():
    [plan, deploy, rollback, unlock, help_] = parse(
        "/plan\n/deploy staging\n/rollback production --to 3\n/unlock\n/help")
    assert plan == Command("plan", (), 1, "/plan")
    assert (deploy.name, deploy.environment, deploy.line) == ("deploy", "staging", 2)
    assert rollback.args == ("production",) and rollback.option("to") == 3 and rollback.error is None
    assert unlock.args == () and unlock.environment is None
    assert help_.name == "help"


def test_several_commands_in_order_with_text_around():
    body = "Looks good to me.\n\n/plan\nthen\n  /deploy staging\n/rollback --to=2"
    assert [(c.name, c.line) for c in parse(body)] == [("plan", 3), ("deploy", 5), ("rollback", 6)]


def test_only_at_the_start_of_a_line():
    assert names("please /plan this") == []
    assert names("   /plan") == ["plan"]           # up to three spaces, as Markdown allows
    assert names("see https://example.com/plan or /usr/bin/plan") == []


def test_paths_and_urls_at_the_start_of_a_line_are_not_commands():
    assert names("/usr/bin/python crashed\n/plan.\n/deploy/staging\n/etc/hosts") == []


@pytest.mark.parametrize("body", [
    "```\n/plan\n```",
    "~~~\n/plan\n~~~",
    "````md\n```\n/plan\n```\n````",           # a longer fence is not closed by a shorter one
    "```\n/plan",                              # an unclosed fence runs to the end
    "- ```\n  /plan\n  ```",                   # a fence in a list item
    "    /plan",                               # indented code
    "\t/plan",
    "> /plan",
    "  > /plan",
    ">> /plan",
    "> please run\n/plan",                     # lazily continues the quoted paragraph (rendered inside it)
    "<!-- /plan -->",
    "<!--\n/plan\n-->",
    "text <!-- hidden\n/plan\n--> more",
])
def test_hidden_commands_are_ignored(body):
    assert names(body) == []


def test_text_after_hidden_blocks_is_read_again():
    body = "```\n/plan\n```\n/deploy staging\n> quote\n\n/unlock\n<!-- x -->\n/help"
    assert [(c.name, c.line) for c in parse(body)] == [("deploy", 4), ("unlock", 7), ("help", 9)]


def test_a_backtick_fence_cannot_have_backticks_in_its_info_string():
    assert names("``` not a fence ` here\n/plan") == ["plan"]


def test_a_comment_marker_in_a_code_span_does_not_hide_the_rest():
    assert names("write `<!--` to start a comment\n/plan") == ["plan"]


def test_a_trailing_comment_on_a_command_line_is_not_an_argument():
    [deploy] = parse("/deploy staging <!-- for QA -->")
    assert deploy.args == ("staging",) and deploy.error is None


def test_windows_line_endings():
    assert names("hi\r\n/plan\r\n/help\r\n") == ["plan", "help"]


def test_unknown_commands_are_reported_with_a_suggestion():
    [cmd] = parse("/deplyo staging")
    assert cmd.name == "unknown" and cmd.args == ("deplyo",)
    assert cmd.error == "unknown command /deplyo (did you mean /deploy?)"


@pytest.mark.parametrize("action", ["approve", "merge", "assign @bob", "label ~bug", "close", "rebase",
                                    "unapprove", "draft", "ready", "shrug", "Approve"])
def test_gitlab_quick_actions_are_never_ours_nor_unknown(action):
    assert parse(f"/{action}") == []
    assert parse(f"/{action}", forge="gitlab") == []


def test_unlock_is_ours_on_github_but_gitlabs_on_gitlab():
    assert names("/unlock production") == ["unlock"]
    assert parse("/unlock production", forge="gitlab") == []
    [cmd] = parse("/unlock-env production", forge="gitlab")
    assert cmd.name == "unlock" and cmd.environment == "production"


def test_no_command_of_ours_is_only_reachable_through_a_gitlab_quick_action():
    for spec in REGISTRY.values():
        assert spec.spelling("gitlab") not in GITLAB_QUICK_ACTIONS
        assert lookup(spec.spelling("gitlab"), "gitlab") is spec


def test_register_refuses_collisions():
    with pytest.raises(ValueError, match="GitLab quick action"):
        register(CommandSpec("merge", "", "merge", "write", no_args))
    with pytest.raises(ValueError, match="already registered"):
        register(CommandSpec("plan", "", "again", "write", no_args))


def test_commands_are_case_insensitive():
    assert names("/PLAN") == ["plan"]


@pytest.mark.parametrize("body, error", [
    ("/deploy Production", "'Production' is not an environment name"),
    ("/deploy prod_eu", "'prod_eu' is not an environment name"),
    ("/deploy " + "a" * 64, "is not an environment name"),
    ("/deploy staging production", "takes at most one environment"),
    ("/rollback --to v3", "'v3' is not a version number"),
    ("/rollback --to 0", "'0' is not a version number"),
    ("/rollback --to -1", "'-1' is not a version number"),
    ("/rollback --to", "--to needs a value"),
    ("/rollback --to 2 --to 3", "--to is given twice"),
    ("/rollback --force", "unknown option --force"),
    ("/plan now", "takes no arguments"),
    ("/unlock --to 3", "unknown option --to"),
])
def test_bad_arguments_come_back_with_an_error(body, error):
    [cmd] = parse(body)
    assert cmd.error is not None and error in cmd.error
    assert cmd.name != "unknown" and cmd.error.startswith("/" + cmd.name)


def test_valid_environment_and_version():
    [cmd] = parse("/rollback fraud-eu-1 --to 12")
    assert cmd.args == ("fraud-eu-1",) and cmd.option("to") == 12 and cmd.error is None


def test_help_lists_every_command_with_usage_and_permission():
    text = help_text()
    for spec in REGISTRY.values():
        assert f"`{spec.usage()}`" in text
    assert "`/rollback [env] [--to VERSION]`" in text and "write access" in text
    assert "`/unlock-env [env]`" in help_text("gitlab") and "`/unlock [env]`" not in help_text("gitlab")


def test_empty_and_missing_bodies():
    assert parse("") == [] and parse(None) == []
