"""GitHub App clients: one PyGithub ``Github`` per installation, with cached tokens, shared pacing and
bounded retries.

* **Auth**: the app signs a JWT (``Auth.AppAuth``) and trades it for an installation token
  (``AppInstallationAuth`` → ``GithubIntegration.get_access_token``). Tokens live in a process-wide,
  thread-safe :class:`TokenCache` until :data:`TOKEN_REFRESH_MARGIN` before they expire, and
  :class:`GitHubClients` keeps one ``Github`` per installation, so a webhook never mints a token of
  its own; a token GitHub rejects early (401) is dropped with :meth:`GitHubClients.invalidate`.
* **Pacing**: every request an installation's client sends first asks the :class:`~modelherd.pacing.Pacer`
  (``acquire(key, write=…)``), which holds across all workers; PyGithub's own per-object throttle is
  switched off (``seconds_between_requests = seconds_between_writes = 0``) so nothing is paced twice.
  The hook is :class:`PacedRequester`, the one place every PyGithub request passes through.
* **Retries**: :class:`PoliteRetry` is PyGithub's ``GithubRetry`` (5xx, secondary rate limits with
  ``Retry-After``, primary limits until ``X-RateLimit-Reset``) with 429 handled like 403, every wait
  capped (``max_wait`` each, ``max_total_wait`` per request): a longer wait raises
  :class:`~modelherd.pacing.RateLimited` so the queue runs the job again later instead of a worker
  sleeping for an hour. Server errors are retried for idempotent methods only (a ``POST`` that timed
  out may have created its comment); rate-limited requests, which GitHub did not act on, for all.
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from github import Auth, Github, GithubIntegration
from github.GithubException import RateLimitExceededExceedsMaxWait
from github.GithubObject import is_undefined
from github.GithubRetry import GithubRetry
from github.Requester import Requester
from modelherd.clock import epoch, utcnow
from modelherd.pacing import Pacer, RateLimited
from modelherd.settings import GitHubSettings

if TYPE_CHECKING:
    from modelherd.forges.github import GitHubForge, RepoCaches

TOKEN_REFRESH_MARGIN = timedelta(minutes=5)   # tokens last an hour; never start a job on a dying one
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
RATE_LIMIT_STATUSES = (403, 429)
USER_AGENT = "modelherd"


# -- tokens -------------------------------------------------------------------------------------------


class TokenCache:
    """Installation tokens by (API URL, app id, installation id), minted at most once per key at a time."""

    def __init__(self, margin: timedelta = TOKEN_REFRESH_MARGIN):
        self.margin = margin
        self._tokens: dict[tuple, tuple[str, datetime]] = {}
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()
        self.minted = 0

    def get(self, key: tuple, mint: Callable[[], tuple[str, datetime]]) -> str:
        """The cached token for ``key``, or a fresh one from ``mint()`` when near its expiry."""
        with self._lock(key):
            cached = self._tokens.get(key)
            if cached is None or cached[1] - self.margin <= utcnow():
                cached = mint()
                self._tokens[key] = cached
                self.minted += 1
            return cached[0]

    def invalidate(self, key: tuple) -> None:
        """Forget ``key``'s token (GitHub refused it); the next request mints one."""
        with self._lock(key):
            self._tokens.pop(key, None)

    def clear(self) -> None:
        """Forget every token (the next request of each installation mints one)."""
        with self._guard:
            self._tokens.clear()

    def _lock(self, key: tuple) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


#: The process's tokens: every GitHubClients of the process shares them.
TOKENS = TokenCache()


class CachedInstallationAuth(Auth.AppInstallationAuth):
    """PyGithub's installation auth with its token kept in a shared :class:`TokenCache`."""

    def __init__(self, app_auth: Auth.AppAuth, installation_id: int, cache: TokenCache, cache_key: tuple):
        super().__init__(app_auth, installation_id)
        self._cache, self._cache_key = cache, cache_key

    @property
    def token(self) -> str:
        return self._cache.get(self._cache_key, self._mint)

    def _mint(self) -> tuple[str, datetime]:
        authorization = self._get_installation_authorization()
        return authorization.token, authorization.expires_at


# -- retries ------------------------------------------------------------------------------------------


def rate_limit_wait(status: int, headers: Any, now: float | None = None) -> float | None:
    """Seconds GitHub asks us to wait before the next request, or None when it asks nothing.

    ``Retry-After`` (seconds or an HTTP date) on any status; for 403/429 with
    ``X-RateLimit-Remaining: 0``, until ``X-RateLimit-Reset`` (+1 s: the reset second is not exact).
    """
    now = epoch() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after:
        if retry_after.strip().isdigit():
            return float(retry_after)
        parsed = email.utils.parsedate_tz(retry_after)
        return max(0.0, email.utils.mktime_tz(parsed) - now) if parsed else None
    reset = headers.get("X-RateLimit-Reset")
    if status in RATE_LIMIT_STATUSES and headers.get("X-RateLimit-Remaining") == "0" and reset:
        return max(0.0, float(reset) - now) + 1.0
    return None


class PoliteRetry(GithubRetry):
    """``GithubRetry`` with capped waits, 429 understood, pacing of the retried request, and holds.

    ``max_wait``: the longest single wait a worker accepts; ``max_total_wait``: the most one request
    may spend waiting on rate limits. Beyond either, :class:`RateLimited` is raised and the pacer is
    told to hold the installation until the forge's time, so the other workers wait too.
    """

    def __init__(self, *, pacer: Pacer | None = None, pace_key: str = "", max_wait: float = 30.0,
                 max_total_wait: float = 120.0, waited: float = 0.0, write: bool = False, **kwargs: Any):
        kwargs.setdefault("total", 5)
        kwargs.setdefault("backoff_factor", 0.5)
        kwargs.setdefault("backoff_max", 8.0)
        kwargs.setdefault("raise_on_status", False)    # out of retries: PyGithub raises the status it got
        kwargs.setdefault("allowed_methods", IDEMPOTENT_METHODS)
        kwargs.setdefault("status_forcelist", [*range(500, 600), 429])   # GithubRetry adds 403
        kwargs.setdefault("max_rate_limit_wait", max_wait)
        super().__init__(**kwargs)
        self.pacer, self.pace_key = pacer, pace_key
        self.max_wait, self.max_total_wait = max_wait, max_total_wait
        self.waited, self.write = waited, write

    def new(self, **kw: Any) -> "PoliteRetry":
        kw.update(pacer=self.pacer, pace_key=self.pace_key, max_wait=self.max_wait,
                  max_total_wait=self.max_total_wait, waited=self.waited, write=self.write)
        return super().new(**kw)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """Rate-limited requests were not acted on, so any method may be sent again."""
        if status_code in RATE_LIMIT_STATUSES and status_code in (self.status_forcelist or ()):
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        wait = rate_limit_wait(response.status, response.headers) if response is not None else None
        if wait is not None:
            self._check_wait(wait, f"GitHub answered {response.status} to {method} {_path(url)}")
        try:
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
        except RateLimitExceededExceedsMaxWait as exc:
            self._check_wait(exc.wait or self.secondary_rate_wait,
                             f"GitHub's secondary rate limit on {method} {_path(url)}")
            raise
        if wait is not None and response.status == 429:
            retry.get_backoff_time = lambda: wait     # urllib3 would only back off exponentially
        retry.waited = self.waited + (wait if wait is not None else retry.get_backoff_time())
        retry.write = (method or "GET").upper() not in READ_METHODS
        return retry

    def sleep(self, response=None) -> None:
        """Wait as GitHub asked, then take a slot like any other request of the installation."""
        super().sleep(response)
        if self.pacer is not None:
            self.pacer.acquire(self.pace_key, write=self.write)

    def _check_wait(self, wait: float, what: str) -> None:
        """Hold the installation for ``wait`` s; raise :class:`RateLimited` if that is too long to sleep."""
        if self.pacer is not None:
            self.pacer.hold(self.pace_key, wait)
        if wait > self.max_wait or self.waited + wait > self.max_total_wait:
            raise RateLimited(epoch() + wait, what)


def _path(url: str | None) -> str:
    return urlparse(url or "").path


# -- the paced client ---------------------------------------------------------------------------------


class PacedRequester(Requester):
    """PyGithub's requester that asks the pacer before each request it sends (redirects included).

    ``_Requester__requestRaw`` is the single method every PyGithub request goes through; overriding
    it is the narrowest hook PyGithub offers for per-client behaviour (``injectConnectionClasses`` is
    process-wide and turns connection reuse off). ``tests/test_pacing.py`` checks that the hook sees
    every request, so a PyGithub release that renames it fails the suite rather than pacing silently
    stopping. Derived requesters (``withAuth``/``withLazy``/``withApiVersion``) stay paced.
    """

    def __init__(self, *args: Any, pacer: Pacer, pace_key: str, **kwargs: Any):
        self.pacer, self.pace_key = pacer, pace_key
        super().__init__(*args, **kwargs)

    def _derive(self, **changes: Any) -> "PacedRequester":
        kwargs = {**self.kwargs, **changes}
        return PacedRequester(**kwargs, pacer=self.pacer, pace_key=self.pace_key)

    def withAuth(self, auth):  # noqa: N802 (PyGithub's name)
        return self._derive(auth=auth)

    def withLazy(self, lazy):  # noqa: N802
        return self if is_undefined(lazy) or lazy == self.is_lazy else self._derive(lazy=lazy)

    def withApiVersion(self, api_version):  # noqa: N802
        return self if api_version == self.api_version else self._derive(api_version=api_version)

    def _Requester__requestRaw(self, cnx, verb, url, requestHeaders, input, stream=False,  # noqa: N802,N803
                               follow_302_redirect=False):
        if not requestHeaders.get("Authorization", "").startswith("Bearer "):   # app JWT calls: app budget
            self.pacer.acquire(self.pace_key, write=verb.upper() not in READ_METHODS)
        return super()._Requester__requestRaw(cnx, verb, url, requestHeaders, input, stream=stream,
                                              follow_302_redirect=follow_302_redirect)


class PacedGithub(Github):
    """A ``github.Github`` whose requests go through a :class:`PacedRequester`."""

    def __init__(self, *, pacer: Pacer, pace_key: str, **kwargs: Any):
        super().__init__(**kwargs)
        plain = self.requester
        self._Github__requester = PacedRequester(**plain.kwargs, pacer=pacer, pace_key=pace_key)
        plain.close()


# -- the factory --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientOptions:
    """How clients talk to GitHub (defaults suit github.com and GHES alike)."""

    timeout: int = 15
    per_page: int = 100
    max_wait: float = 30.0
    max_total_wait: float = 120.0
    retries: int = 5
    backoff_factor: float = 0.5


class GitHubClients:
    """The app's clients: ``for_installation(id) -> github.Github`` and ``forge(id, "owner/name")``.

    One instance per process (workers build it once). Clients, tokens and the forge's caches
    (immutable contents, sticky-comment ids, check-run ids) are kept here and shared by every job.
    """

    def __init__(self, settings: GitHubSettings, *, pacer: Pacer, private_key: str | None = None,
                 options: ClientOptions | None = None, tokens: TokenCache = TOKENS):
        if settings.app_id is None:
            raise ValueError("GitHub: app_id is not set (MODELHERD_GITHUB__APP_ID)")
        self.settings, self.pacer, self.tokens = settings, pacer, tokens
        self.options = options or ClientOptions()
        self.base_url = settings.api_url.rstrip("/")
        self.app_auth = Auth.AppAuth(settings.app_id, private_key or _read_key(settings.private_key_path))
        self._clients: dict[int, Github] = {}
        self._caches: dict[str, RepoCaches] = {}
        self._lock = threading.Lock()
        self._app_lock = threading.Lock()
        self._bot_login: str | None = None

    def pace_key(self, installation_id: int) -> str:
        """The pacer key of an installation: ``host[/path]/installation-id``."""
        url = urlparse(self.base_url)
        return f"{url.netloc}{url.path}/{installation_id}"

    def for_installation(self, installation_id: int) -> Github:
        """The installation's ``Github`` (made once, reused by every job of this process)."""
        with self._lock:
            client = self._clients.get(installation_id)
            if client is None:
                client = self._clients[installation_id] = self._make_client(installation_id)
            return client

    def forge(self, installation_id: int, repo_full_name: str) -> "GitHubForge":
        """The :class:`~modelherd.forges.github.GitHubForge` of one repository of an installation."""
        from modelherd.forges.github import GitHubForge, RepoCaches

        with self._lock:
            caches = self._caches.setdefault(repo_full_name.lower(), RepoCaches())
        return GitHubForge(self.for_installation(installation_id), repo_full_name, app_id=self.settings.app_id,
                           bot_login=self.bot_login, caches=caches,
                           on_bad_credentials=lambda: self.invalidate(installation_id))

    def bot_login(self) -> str:
        """The app's own login, ``<slug>[bot]``: asked once per process (``GET /app`` with the JWT)."""
        with self._app_lock:
            if self._bot_login is None:
                integration = GithubIntegration(auth=self.app_auth, base_url=self.base_url, user_agent=USER_AGENT,
                                                timeout=self.options.timeout, retry=PoliteRetry(),
                                                seconds_between_requests=0, seconds_between_writes=0)
                self._bot_login = f"{integration.get_app().slug}[bot]"
            return self._bot_login

    def invalidate(self, installation_id: int) -> None:
        """Drop the installation's cached token (GitHub answered 401): the next request mints one."""
        self.tokens.invalidate(self._token_key(installation_id))

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _token_key(self, installation_id: int) -> tuple:
        return (self.base_url, str(self.settings.app_id), installation_id)

    def _make_client(self, installation_id: int) -> Github:
        key = self.pace_key(installation_id)
        auth = CachedInstallationAuth(self.app_auth, installation_id, self.tokens, self._token_key(installation_id))
        retry = PoliteRetry(pacer=self.pacer, pace_key=key, max_wait=self.options.max_wait,
                            max_total_wait=self.options.max_total_wait, total=self.options.retries,
                            backoff_factor=self.options.backoff_factor)
        return PacedGithub(pacer=self.pacer, pace_key=key, auth=auth, base_url=self.base_url,
                           timeout=self.options.timeout, per_page=self.options.per_page, user_agent=USER_AGENT,
                           retry=retry, seconds_between_requests=0, seconds_between_writes=0, lazy=True)


def _read_key(path: Path | None) -> str:
    if path is None:
        raise ValueError("GitHub: private_key_path is not set (MODELHERD_GITHUB__PRIVATE_KEY_PATH)")
    return Path(path).read_text(encoding="utf-8")


__all__ = ["CachedInstallationAuth", "ClientOptions", "GitHubClients", "PacedGithub", "PacedRequester",
           "PoliteRetry", "TOKENS", "TokenCache", "rate_limit_wait"]
