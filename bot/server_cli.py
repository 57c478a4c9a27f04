"""Server commands: ``modelherd serve``, ``modelherd worker``, ``modelherd db upgrade``.

Attached to the main group in ``modelherd.cli``.  ``serve`` runs :class:`WebhookServer`, gunicorn's
application API around :func:`modelherd.app.create_app`: the app (store engine, queue connection)
is built in each worker after the fork, never shared with the arbiter, and the database is migrated
once before gunicorn starts.  With ``worker_in_process`` each web worker also runs a job consumer on
background threads (claims keep jobs exclusive).  Settings come from ``--settings FILE`` (or
``MODELHERD_CONFIG``) and ``MODELHERD_*`` environment variables.
"""

from __future__ import annotations

import logging
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from modelherd.settings import Settings, load_settings

log = logging.getLogger(__name__)

settings_option = click.option("--settings", "settings_path", type=click.Path(exists=True, dir_okay=False),
                               default=None, help="Settings file (YAML/JSON); env MODELHERD_CONFIG.")
wiring_option = click.option("--wiring", default="modelherd.wiring:build", show_default=True,
                             envvar="MODELHERD_WIRING",
                             help="module:function returning the worker's Handlers.")


def _settings(path: str | None) -> Settings:
    return load_settings(path)


def open_store(url: str, revision: str = "head") -> Any:
    """The migrated store at ``url``; a :class:`click.ClickException` (one line, exit 1) when the
    database cannot be reached or migrated, never a driver's traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from modelherd.store import Store

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = "(unparsable database_url)"
    try:
        store = Store.from_url(url)
        store.upgrade(revision)
    except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
        reason = getattr(exc, "orig", None) or exc
        text = " ".join(str(reason).split()) or type(reason).__name__
        raise click.ClickException(f"cannot use the database at {shown}: {text[:300]}") from None
    return store


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("alembic", "huey"):  # per-task lines; modelherd logs each delivery id itself
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


@click.command()
@settings_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=int,
              help="Threads per worker process that run requests (once their body has fully arrived).")
@click.option("--body-timeout", default=10.0, show_default=True, type=float,
              help="Seconds a request's body may take to arrive before it is answered 408.")
@click.option("--worker-threads", default=1, show_default=True, type=int,
              help="Job threads per web process when worker_in_process is set.")
@click.option("--log-level", default="info", show_default=True)
@wiring_option
def serve(settings_path: str | None, host: str, port: int, workers: int, threads: int, body_timeout: float,
          worker_threads: int, log_level: str, wiring: str) -> None:
    """Serve the webhook endpoint and health checks (gunicorn processes, uvicorn connections).

    A request reaches the app only once its whole body has arrived, so slow clients cannot hold the
    threads that answer webhooks (see modelherd.asgi and deploy/README.md)."""
    from modelherd.app import ConfigurationError, gitlab_webhook_secret, webhook_secret

    _logging(log_level)
    settings = _settings(settings_path)
    try:
        webhook_secret(settings)
        gitlab_webhook_secret(settings)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.worker_in_process:
        from modelherd.worker import load_wiring
        try:
            load_wiring(wiring)
        except LookupError as exc:
            raise click.ClickException(f"worker_in_process is set but {exc}") from exc
    open_store(settings.database_url).dispose()  # migrate once, before forking
    WebhookServer(settings, {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                             "loglevel": log_level, "body_timeout": body_timeout},
                  wiring=wiring, worker_threads=worker_threads).run()


@click.command()
@settings_option
@click.option("--threads", default=2, show_default=True, type=int, help="Job threads.")
@click.option("--log-level", default="info", show_default=True)
@wiring_option
def worker(settings_path: str | None, threads: int, log_level: str, wiring: str) -> None:
    """Run queued jobs until interrupted (one or many processes, any machine sharing the queue)."""
    from modelherd.worker import run_worker

    _logging(log_level)
    settings = _settings(settings_path)
    open_store(settings.database_url).dispose()  # a clear line when the database is unreachable
    try:
        run_worker(settings, threads=threads, wiring=wiring)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def db() -> None:
    """The store's database."""


@db.command("upgrade")
@settings_option
@click.option("--revision", default="head", show_default=True)
def db_upgrade(settings_path: str | None, revision: str) -> None:
    """Apply the migrations (also done by `serve` and `worker` at start)."""
    from modelherd.store.migrate import current_revision

    store = open_store(_settings(settings_path).database_url, revision)
    click.echo(f"database at revision {current_revision(store.engine)}")
    store.dispose()


@db.command("revision")
@settings_option
@click.option("-m", "--message", required=True)
@click.option("--empty", is_flag=True, help="Do not autogenerate from the models.")
def db_revision(settings_path: str | None, message: str, empty: bool) -> None:
    """Write a new migration from the models (developers; needs an up-to-date database)."""
    from modelherd.store import Store
    from modelherd.store.migrate import revision

    store = Store.from_url(_settings(settings_path).database_url)
    revision(store.engine, message, autogenerate=not empty)


class WebhookServer(BaseApplication):
    """``WebhookServer(settings, {"bind": "0.0.0.0:8080", "workers": 2}).run()``.

    gunicorn manages the processes; each runs :data:`modelherd.asgi.WORKER_CLASS` (uvicorn) unless
    ``options["worker_class"]`` says otherwise, and then the app is wrapped in
    :class:`modelherd.asgi.BufferedWSGI` (``threads`` request threads, ``body_timeout`` seconds for a
    body).  ``app_factory`` replaces the app built in each worker (benchmarks: a bare handler on the
    same server).
    """

    def __init__(self, settings: Settings, options: dict[str, Any], *, wiring: str = "modelherd.wiring:build",
                 worker_threads: int = 1, app_factory: Any = None):
        from modelherd.asgi import DEFAULT_BODY_TIMEOUT, WORKER_CLASS

        self.settings = settings
        self.app_factory = app_factory
        self.options = {"worker_class": WORKER_CLASS, **options}
        self.body_timeout = float(self.options.pop("body_timeout", None) or DEFAULT_BODY_TIMEOUT)
        self.wiring = wiring
        self.worker_threads = worker_threads
        self.in_process: Any = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> Any:
        from modelherd.asgi import WORKER_CLASS, BufferedWSGI

        app = self._load_wsgi()
        if self.options["worker_class"] != WORKER_CLASS:
            return app
        return BufferedWSGI(app, max_body_bytes=self.max_body_bytes(), body_timeout=self.body_timeout,
                            threads=int(self.options.get("threads") or 4))

    def max_body_bytes(self) -> int:
        """The largest body any endpoint accepts (each endpoint enforces its own limit)."""
        from modelherd import gitlab_intake

        github = self.settings.github.max_body_bytes if self.settings.github else 0
        return max(github, gitlab_intake.MAX_BODY_BYTES)

    def _load_wsgi(self) -> Any:
        if self.app_factory is not None:
            return self.app_factory()
        from modelherd.app import create_app
        from modelherd.worker import InProcessWorker, make_dispatcher, open_backends

        store, queue = open_backends(self.settings, migrate=False)
        if self.settings.worker_in_process:
            dispatcher = make_dispatcher(self.settings, store, queue, self.wiring)
            self.in_process = InProcessWorker(dispatcher, self.worker_threads).start()
        return create_app(self.settings, store, queue)

    def _worker_exit(self, _server: Any, _worker: Any) -> None:
        if self.in_process is not None:
            self.in_process.stop(graceful=True)
