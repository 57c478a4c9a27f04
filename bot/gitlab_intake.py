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
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from modelherd.forges.gitlab import is_bot_user
from modelherd.intake import IntakeError
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
    """The hook's JSON object (400 when it is not one)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise IntakeError(HTTPStatus.BAD_REQUEST, "body is not a JSON object")
    return data


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """The de-duplication key: the event UUID, else the Idempotency-Key, else the body's SHA-256."""
    for name in ("X-Gitlab-Event-UUID", "Idempotency-Key"):
        value = (headers.get(name) or "").strip()
        if value:
            return value[:128]
    return "sha256:" + hashlib.sha256(body).hexdigest()


# -- translation ----------------------------------------------------------------------------------------


def repository(hook: Mapping[str, Any]) -> dict[str, Any]:
    """GitHub's ``repository`` fields the handlers read, from the hook's ``project``."""
    project = hook.get("project") or {}
    return {"full_name": project.get("path_with_namespace"), "default_branch": project.get("default_branch")}


def _update_action(attrs: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    """An MR ``update``: new commits (``oldrev``) → synchronize; draft → ready; else edited."""
    if attrs.get("oldrev"):
        return "synchronize"
    draft = changes.get("draft") or changes.get("work_in_progress") or {}
    if draft.get("previous") is True and draft.get("current") is False:
        return "ready_for_review"
    return "edited"


def translate_merge_request(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A Merge Request Hook as ``pull_request`` (or ``pull_request_review`` for approvals)."""
    attrs = hook.get("object_attributes") or {}
    raw = str(attrs.get("action") or "")
    if raw in APPROVAL_ACTIONS:
        event, action = "pull_request_review", APPROVAL_ACTIONS[raw]
    elif raw == "update":
        event, action = "pull_request", _update_action(attrs, hook.get("changes") or {})
    else:
        event, action = "pull_request", MR_ACTIONS.get(raw, raw or None)
    merged = raw == "merge" or attrs.get("state") == "merged"
    pull = {"number": attrs.get("iid"), "merged": merged, "state": attrs.get("state"),
            "head": {"sha": (attrs.get("last_commit") or {}).get("id")}}
    return event, action, {"action": action, "pull_request": pull, "repository": repository(hook)}


def translate_note(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A Note Hook on a merge request as ``issue_comment``; any other note stays ``gitlab:note``."""
    attrs = hook.get("object_attributes") or {}
    if attrs.get("noteable_type") != "MergeRequest" or not isinstance(hook.get("merge_request"), dict):
        return untranslated(hook)
    action = NOTE_ACTIONS.get(str(attrs.get("action") or "create"), str(attrs.get("action")))
    user = hook.get("user") or {}
    payload = {
        "action": action,
        "issue": {"number": hook["merge_request"].get("iid"), "pull_request": {}},
        "comment": {"id": attrs.get("id"), "body": attrs.get("note") or "",
                    "user": {"login": user.get("username"), "type": "Bot" if is_bot_user(user) else "User"}},
        "repository": repository(hook),
    }
    return "issue_comment", action, payload


def translate_push(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A Push Hook as ``push``: ``ref``, ``before``, ``after``, ``deleted`` (after is all zeros)."""
    after = hook.get("after")
    return "push", None, {"ref": hook.get("ref"), "before": hook.get("before"), "after": after,
                          "deleted": after == ZERO_SHA, "repository": repository(hook)}


def untranslated(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A hook no handler reads: recorded as ``gitlab:<object_kind>`` and skipped by the worker."""
    attrs = hook.get("object_attributes") or {}
    action = attrs.get("action") if isinstance(attrs, dict) else None
    kind = str(hook.get("object_kind") or hook.get("event_name") or "unknown")[:50]
    return f"gitlab:{kind}", action if isinstance(action, str) else None, {"repository": repository(hook)}


TRANSLATORS = {"merge_request": translate_merge_request, "note": translate_note, "push": translate_push}


def translate(hook: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(event, action, payload) in the shape the handlers read; the original under ``"gitlab"``."""
    kind = hook.get("object_kind")
    event, action, payload = TRANSLATORS.get(kind, untranslated)(hook)
    return event, action[:64] if isinstance(action, str) else None, {**payload, "gitlab": hook}


def to_new_event(headers: Mapping[str, str], body: bytes) -> NewEvent:
    """The forge-neutral record of an authentic GitLab hook (call :func:`check_token` first)."""
    hook = parse_body(body)
    event, action, payload = translate(hook)
    repo = payload["repository"].get("full_name")
    return NewEvent(forge=FORGE, delivery_id=delivery_id(headers, body), event=event, payload=payload,
                    action=action, installation_id=None, repo=repo[:255] if isinstance(repo, str) else None,
                    headers={k: headers[k] for k in KEPT_HEADERS if headers.get(k) is not None})
