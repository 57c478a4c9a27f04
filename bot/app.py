"""The Flask app: ``POST /webhooks/github``, ``POST /webhooks/gitlab``, ``GET /healthz``, ``GET /readyz``.

``create_app`` receives its dependencies (settings, store, queue) and builds none, so tests pass
their own.  It refuses to build when GitHub or GitLab is configured without a webhook secret.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, BinaryIO

from flask import Flask, Response, jsonify, request

from modelherd import gitlab_intake, intake
from modelherd.queue import JobQueue
from modelherd.settings import Settings
from modelherd.store import Store

log = logging.getLogger(__name__)


class ConfigurationError(RuntimeError):
    """Settings that the server must not start with."""


def _required_secret(section: Any, forge: str, key: str, what: str) -> str | None:
    """A forge's webhook secret, ``None`` when the forge is not configured; an empty one is refused."""
    if section is None:
        return None
    secret = section.webhook_secret
    if secret is None or not secret.get_secret_value():
        env = "MODELHERD_" + key.upper().replace(".", "__")
        raise ConfigurationError(
            f"{forge} is configured but has no webhook secret: set {env} (or {key} in the settings file) "
            f"to {what}. modelherd does not accept unauthenticated webhooks.")
    return secret.get_secret_value()


def webhook_secret(settings: Settings) -> str | None:
    """The GitHub webhook secret, or ``None`` when GitHub is not configured; refuses an empty one."""
    return _required_secret(settings.github, "GitHub", "github.webhook_secret",
                            "the secret of the GitHub App's webhook")


def gitlab_webhook_secret(settings: Settings) -> str | None:
    """The GitLab webhook secret token, or ``None`` when GitLab is not configured; refuses an empty one."""
    return _required_secret(settings.gitlab, "GitLab", "gitlab.webhook_secret",
                            "the secret token of the GitLab webhooks")


def create_app(settings: Settings, store: Store, queue: JobQueue) -> Flask:
    """The WSGI app over ``store`` and ``queue``."""
    secret = webhook_secret(settings)
    gitlab_secret = gitlab_webhook_secret(settings)
    limit = settings.github.max_body_bytes if settings.github else 25 * 1024 * 1024
    app = Flask("modelherd")
    app.extensions["modelherd"] = {"settings": settings, "store": store, "queue": queue}

    @app.post("/webhooks/github")
    def github_webhook() -> tuple[Response, int]:
        if secret is None:
            return _error(HTTPStatus.NOT_FOUND, "GitHub is not configured")
        try:
            intake.check_size(request.content_length, limit)
            body = read_body(request.stream, limit)
            event = intake.verify(request.headers, body, secret)
            outcome = intake.accept(intake.to_new_event(event, request.headers, body), store, queue)
        except intake.IntakeError as exc:
            log.warning("webhook refused (%s %s), delivery %s", exc.status.value, exc.message,
                        request.headers.get("X-GitHub-Delivery", "-"))
            return _error(exc.status, exc.message)
        return jsonify(outcome.body()), outcome.status.value

    @app.post("/webhooks/gitlab")
    def gitlab_webhook() -> tuple[Response, int]:
        if gitlab_secret is None:
            return _error(HTTPStatus.NOT_FOUND, "GitLab is not configured")
        try:
            gitlab_intake.check_token(request.headers, gitlab_secret)   # the token is a header: first
            intake.check_size(request.content_length, gitlab_intake.MAX_BODY_BYTES)
            body = read_body(request.stream, gitlab_intake.MAX_BODY_BYTES)
            outcome = intake.accept(gitlab_intake.to_new_event(request.headers, body), store, queue)
        except intake.IntakeError as exc:
            log.warning("GitLab webhook refused (%s %s), event %s", exc.status.value, exc.message,
                        request.headers.get("X-Gitlab-Event-UUID", "-"))
            return _error(exc.status, exc.message)
        return jsonify(outcome.body()), outcome.status.value

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify({"status": "ok"}), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        checks = {"database": _probe(store.ping), "queue": _probe(queue.ping)}
        ready = all(v == "ok" for v in checks.values())
        return jsonify({"status": "ok" if ready else "unavailable", **checks}), 200 if ready else 503

    return app


def read_body(stream: BinaryIO, limit: int) -> bytes:
    """Read at most ``limit`` bytes; 413 as soon as there is more (chunked bodies declare no length)."""
    chunks, size = [], 0
    while chunk := stream.read(min(65536, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise intake.IntakeError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {limit} bytes")
    return b"".join(chunks)


def _probe(check: Any) -> str:
    """``"ok"`` or the error's class name (the full error goes to the log, never to the client)."""
    try:
        check()
        return "ok"
    except Exception as exc:
        log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
        return f"error: {type(exc).__name__}"


def _error(status: HTTPStatus, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status.value
