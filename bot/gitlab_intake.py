"""GitLab webhook intake: check the token, translate the hook, de-duplicate, persist, enqueue.

GitLab signs nothing: a webhook carries the secret itself in ``X-Gitlab-Token``, compared here in
constant time with ``settings.gitlab.webhook_secret``. Deliveries are de-duplicated by
``X-Gitlab-Event-UUID`` (GitLab 16.2+; a retry of a hook keeps it), else by ``Idempotency-Key``,
else by a hash of the body.

Handlers are forge-neutral and read the GitHub-shaped fields they always read, so each hook is
*translated* here, never in a handler. The original hook is kept under ``payload["gitlab"]``.

===================================================== =============================================
GitLab hook                                           event / action
===================================================== =============================================
Merge Request Hook ``open`` / ``reopen``              ``pull_request`` opened / reopened
Merge Request Hook ``update`` with ``oldrev``         ``pull_request`` synchronize (new commits)
Merge Request Hook ``update``, draft → ready          ``pull_request`` ready_for_review
Merge Request Hook ``update``, anything else          ``pull_request`` edited (no handler: skipped)
Merge Request Hook ``close`` / ``merge``              ``pull_request`` closed (``merged`` false / true)
Merge Request Hook ``approval(ed)``                   ``pull_request_review`` submitted
Merge Request Hook ``unapproval`` / ``unapproved``    ``pull_request_review`` dismissed
Note Hook on a merge request, ``create``              ``issue_comment`` created
Note Hook on a merge request, ``update``              ``issue_comment`` edited (never runs commands)
Push Hook                                             ``push`` (``ref``, ``after``, ``deleted``)
anything else (other notes, pipelines, …)             ``gitlab:<kind>`` (recorded; no handler)
===================================================== =============================================

Every authentic hook is accepted (202) and persisted; whether it leads to work is the worker's call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from modelherd.forges.gitlab import is_bot_user
from modelherd.intake import IntakeError, check_header_text, parse_json_object
from modelherd.store import NewEvent

FORGE = "gitlab"
MAX_BODY_BYTES = 25 * 1024 * 1024
ZERO_SHA = "0" * 40
#: Headers kept with the event (never the token).
KEPT_HEADERS = ("x-gitlab-event", "x-gitlab-event-uuid", "x-gitlab-webhook-uuid", "x-gitlab-instance",
                "idempotency-key", "user-agent")
#: Merge Request Hook actions → pull_request actions (``update`` is decided by :func:`_update_action`).
MR_ACTIONS = {"open": "opened", "reopen": "reopened", "close": "closed", "merge": "closed"}
#: Approval actions of a Merge Request Hook → pull_request_review actions.
APPROVAL_ACTIONS = {"approval": "submitted", "approved": "submitted",
                    "unapproval": "dismissed", "unapproved": "dismissed"}
#: Note Hook actions → issue_comment actions (GitLab 16.x+ sends ``action``; older ones send none).
NOTE_ACTIONS = {"create": "created", "update": "edited"}


def check_token(headers: Mapping[str, str], secret: str) -> None:
    """401 unless ``X-Gitlab-Token`` equals ``secret`` (constant-time comparison)."""
    if not secret:
        raise ValueError("an empty webhook secret would accept anything")
    token = headers.get("X-Gitlab-Token")
    if not token:
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "missing X-Gitlab-Token")
    if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), secret.encode("utf-8")):
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "bad X-Gitlab-Token")


def parse_body(body: bytes) -> dict[str, Any]:
    """The hook's JSON object, read strictly (400 with the reason when it is not one a store keeps)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST, "body is not UTF-8") from exc
    return parse_json_object(text)


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """The de-duplication key: the event UUID, else the Idempotency-Key, else the body's SHA-256."""
    for name in ("X-Gitlab-Event-UUID", "Idempotency-Key"):
        value = (headers.get(name) or "").strip()
        if value:
            return value[:128]    # control characters were refused by check_header_text
    return "sha256:" + hashlib.sha256(body).hexdigest()


# -- translation ----------------------------------------------------------------------------------------
#
# A hook is authentic (its token matched) but its fields are whatever the sender wrote: each field read
# here is checked for its type, and a wrong one is a 400 naming the field, never an exception.


def _wrong(path: str, expected: str) -> IntakeError:
    return IntakeError(HTTPStatus.BAD_REQUEST, f"field {path} is not {expected}")


def _obj(node: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    """``node[key]`` as an object (``{}`` when absent or null)."""
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(path, "an object")
    return value


def _str(node: Mapping[str, Any], key: str, path: str) -> str | None:
    value = node.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong(path, "a string")
    return value


def _int(node: Mapping[str, Any], key: str, path: str) -> int | None:
    value = node.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _wrong(path, "an integer")
    return value


def repository(hook: Mapping[str, Any]) -> dict[str, Any]:
    """GitHub's ``repository`` fields the handlers read, from the hook's ``project``."""
    project = _obj(hook, "project", "project")
    return {"full_name": _str(project, "path_with_namespace", "project.path_with_namespace"),
            "default_branch": _str(project, "default_branch", "project.default_branch")}


def _update_action(attrs: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    """An MR ``update``: new commits (``oldrev``) → synchronize; draft → ready; else edited."""
    if _str(attrs, "oldrev", "object_attributes.oldrev"):
        return "synchronize"
    draft = _obj(changes, "draft", "changes.draft") or _obj(changes, "work_in_progress", "changes.work_in_progress")
    if draft.get("previous") is True and draft.get("current") is False:
        return "ready_for_review"
    return "edited"


def translate_merge_request(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A Merge Request Hook as ``pull_request`` (or ``pull_request_review`` for approvals)."""
    attrs = _obj(hook, "object_attributes", "object_attributes")
    raw = _str(attrs, "action", "object_attributes.action") or ""
    if raw in APPROVAL_ACTIONS:
        event, action = "pull_request_review", APPROVAL_ACTIONS[raw]
    elif raw == "update":
        event, action = "pull_request", _update_action(attrs, _obj(hook, "changes", "changes"))
    else:
        event, action = "pull_request", MR_ACTIONS.get(raw, raw or None)
    state = _str(attrs, "state", "object_attributes.state")
    merged = raw == "merge" or state == "merged"
    head = _str(_obj(attrs, "last_commit", "object_attributes.last_commit"), "id", "object_attributes.last_commit.id")
    pull = {"number": _int(attrs, "iid", "object_attributes.iid"), "merged": merged, "state": state,
            "head": {"sha": head}}
    return event, action, {"action": action, "pull_request": pull, "repository": repository(hook)}


def translate_note(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A Note Hook on a merge request as ``issue_comment``; any other note stays ``gitlab:note``."""
    attrs = _obj(hook, "object_attributes", "object_attributes")
    if _str(attrs, "noteable_type", "object_attributes.noteable_type") != "MergeRequest":
        return untranslated(hook)
    merge_request = _obj(hook, "merge_request", "merge_request")
    if not merge_request:
        return untranslated(hook)
    raw = _str(attrs, "action", "object_attributes.action") or "create"
    action = NOTE_ACTIONS.get(raw, raw)
    user = _obj(hook, "user", "user")
    payload = {
        "action": action,
        "issue": {"number": _int(merge_request, "iid", "merge_request.iid"), "pull_request": {}},
        "comment": {"id": _int(attrs, "id", "object_attributes.id"),
                    "body": _str(attrs, "note", "object_attributes.note") or "",
                    "user": {"login": _str(user, "username", "user.username"),
                             "type": "Bot" if is_bot_user(user) else "User"}},
        "repository": repository(hook),
    }
    return "issue_comment", action, payload


def translate_push(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A Push Hook as ``push``: ``ref``, ``before``, ``after``, ``deleted`` (after is all zeros)."""
    after = _str(hook, "after", "after")
    return "push", None, {"ref": _str(hook, "ref", "ref"), "before": _str(hook, "before", "before"),
                          "after": after, "deleted": after == ZERO_SHA, "repository": repository(hook)}


def untranslated(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A hook no handler reads: recorded as ``gitlab:<object_kind>`` and skipped by the worker."""
    attrs = hook.get("object_attributes")
    action = attrs.get("action") if isinstance(attrs, dict) else None
    kind = hook.get("object_kind") or hook.get("event_name")
    kind = kind if isinstance(kind, str) and kind else "unknown"
    return f"gitlab:{kind[:50]}", action if isinstance(action, str) else None, {"repository": repository(hook)}


TRANSLATORS = {"merge_request": translate_merge_request, "note": translate_note, "push": translate_push}


def translate(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(event, action, payload) in the shape the handlers read; the original under ``"gitlab"``.

    Raises :class:`IntakeError` (400) naming the first field read that has the wrong type.
    """
    kind = _str(hook, "object_kind", "object_kind")
    event, action, payload = TRANSLATORS.get(kind or "", untranslated)(hook)
    return event, action[:64] if isinstance(action, str) else None, {**payload, "gitlab": hook}


def to_new_event(headers: Mapping[str, str], body: bytes) -> NewEvent:
    """The forge-neutral record of an authentic GitLab hook (call :func:`check_token` first)."""
    check_header_text(headers, KEPT_HEADERS)
    hook = parse_body(body)
    event, action, payload = translate(hook)
    repo = payload["repository"].get("full_name")
    return NewEvent(forge=FORGE, delivery_id=delivery_id(headers, body), event=event, payload=payload,
                    action=action, installation_id=None, repo=repo[:255] if isinstance(repo, str) else None,
                    headers={k: headers[k] for k in KEPT_HEADERS if headers.get(k) is not None})
