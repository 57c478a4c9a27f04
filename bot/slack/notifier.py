"""Sending Slack messages from the queue, out of the way of deployments.

**notify persists, the queue sends.**  :meth:`Notifier.notify` routes the event, writes it to the store's
outbox under its idempotency key (``slack_messages``) and enqueues a delivery job for its thread; it
never talks to Slack and never raises.  The job (:meth:`Notifier.deliver`) sends the thread's pending
messages in order through slack-sdk's ``WebClient`` with its retry handlers (connection errors, 5xx,
and 429 with ``Retry-After`` for waits up to :data:`MAX_INLINE_WAIT`).  When Slack stays unavailable
the messages stay pending and the job is scheduled again with a backoff (longer ``Retry-After`` waits
go back to the queue too, rather than hold a worker); a periodic sweep re-enqueues what is due, so a
lost queue message delays delivery by a minute at most.  A Slack outage therefore delays messages and
never delays or fails a deployment.

**Once, per key.**  A message is sent only while its row is ``pending``, and marked ``sent`` with the
returned ``ts`` right after; deliveries of one thread are serialised by a store mutex.  Slack keeps no
idempotency key, so each attempt to post is recorded first (``slack-post:<id>`` in the effects): when
an attempt may have posted without the answer reaching us (a 5xx, a timeout, a worker killed between
Slack's answer and the mark), the next one looks for the message before posting — the same text, in
the thread after the last reply recorded (``conversations.replies``), or in the channel
(``conversations.history``) — and records the one it finds instead of posting it again.  slack-sdk
never retries a ``chat.postMessage`` on a server or connection error itself (rate limits, which Slack
did not act on, it does).  A channel routed by name is looked up once per process
(``conversations.list``) for these reads; the app needs ``channels:history`` / ``groups:history`` and
``channels:read`` / ``groups:read`` besides ``chat:write``.  A message Slack refuses for good
(unknown channel, invalid blocks) is marked ``failed`` and skipped.

**One thread per pull request and channel.**  The first delivery posts the summary
(:func:`~modelherd.slack.messages.summary_message`) and keeps its ``ts``; every event is a reply in
that thread (``reply_broadcast`` for prominent ones) and is folded into the summary, which is edited in
place (``chat.update``) when its content changed.  Events without a pull request (drift) are posted
to the channel directly.

Wiring::

    notifier = Notifier(store, queue, settings.slack)               # web and worker processes
    notifier.notify(SlackEvent(kind="plan_ready", repo=..., key=f"plan:{repo}#{n}:{sha}", ...))
    RolloutWorker(..., notify=notifier.rollout_notifier(pull_context))  # rollout progress
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from huey import Huey, crontab
from modelherd.clock import monotonic
from modelherd.settings import SlackRouting, SlackSettings
from modelherd.slack.messages import (
    DEFAULT_PROMINENT,
    Message,
    PullContext,
    SlackEvent,
    detail_message,
    fold,
    new_summary,
    rollout_event,
    summary_message,
)
from modelherd.slack.routing import route
from modelherd.store.locks import Busy
from modelherd.store.slack import (
    Group,
    OutboxRecord,
    SlackRepo,
    ThreadRecord,
    slack_repo,
)
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import (
    BackoffRetryIntervalCalculator,
    FixedValueRetryIntervalCalculator,
)
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator

log = logging.getLogger(__name__)

DELIVER_TASK = "modelherd.slack_deliver"
SWEEP_TASK = "modelherd.slack_sweep"

MAX_INLINE_WAIT = 30.0            # a Retry-After up to this is slept through by slack-sdk; longer: re-enqueue
BACKOFF_BASE = 30.0               # first delay after Slack stayed unavailable
BACKOFF_CAP = 900.0               # longest delay between two attempts
GIVE_UP_AFTER = timedelta(days=1)  # pending messages older than this are dropped (and logged)
BUSY_DELAY = 5.0                  # another worker delivers this thread: look again after this
HTTP_TIMEOUT = 10                 # seconds per Slack request

#: Slack error codes that mean "later" rather than "never".  Auth errors are held too: a fixed token
#: should bring the messages, not lose them.
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "rate_limited", "request_timeout", "service_unavailable", "fatal_error", "internal_error",
    "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "team_access_not_granted",
})


class Unavailable(Exception):
    """Slack could not take the request now (outage, rate limit, network, auth); try again later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """Slack refused the request for good (unknown channel, invalid blocks, message gone…)."""


# ---------------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------------


def retry_after(headers: Any) -> float | None:
    """The ``Retry-After`` seconds of a response's headers (values may be lists), or ``None``."""
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, (list, tuple)) else value
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler (sleep ``Retry-After``, retry), for waits up to ``max_wait`` seconds only.

    A longer wait is not slept in a worker: the error reaches :class:`Notifier`, which schedules the
    delivery job after ``Retry-After`` instead.
    """

    def __init__(self, max_retry_count: int = 2, max_wait: float = MAX_INLINE_WAIT):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        wait = retry_after(response.headers)
        return wait is None or wait <= self.max_wait


class _NotAPost:
    """A retry handler for what is safe to send again: never a ``chat.postMessage`` that may have been
    posted (a server or connection error after the request left); the delivery looks for it first."""

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if str(getattr(request, "url", "")).rstrip("/").endswith("/chat.postMessage"):
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)  # type: ignore[misc]


class UnpostedConnectionErrorRetryHandler(_NotAPost, ConnectionErrorRetryHandler):
    """slack-sdk's connection-error retries, except for ``chat.postMessage``."""


class UnpostedServerErrorRetryHandler(_NotAPost, ServerErrorRetryHandler):
    """slack-sdk's 500/503 retries, except for ``chat.postMessage``."""


def retry_handlers(interval: RetryIntervalCalculator | None = None, *,
                   max_wait: float = MAX_INLINE_WAIT) -> list[RetryHandler]:
    """slack-sdk's retry handlers: connection errors and 500/503 (not for ``chat.postMessage``: Slack may
    have posted it), 429 (``Retry-After``: Slack did not act, so every method)."""
    interval = interval or BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return [UnpostedConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=interval),
            BoundedRateLimitRetryHandler(max_retry_count=3, max_wait=max_wait),
            UnpostedServerErrorRetryHandler(max_retry_count=2, interval_calculator=interval)]


def make_client(settings: SlackSettings, *, retry_interval: float | None = None,
                max_wait: float = MAX_INLINE_WAIT, timeout: int = HTTP_TIMEOUT) -> WebClient:
    """A ``WebClient`` for ``settings`` with :func:`retry_handlers`; ``retry_interval`` fixes the pause
    between retries (tests)."""
    interval = FixedValueRetryIntervalCalculator(retry_interval) if retry_interval is not None else None
    base_url = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
    return WebClient(token=settings.token.get_secret_value(), base_url=base_url, timeout=timeout,
                     retry_handlers=retry_handlers(interval, max_wait=max_wait))


def classify(exc: BaseException) -> Unavailable | Refused:
    """What a failed Slack call means for the message: later (:class:`Unavailable`) or never."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", 0) or 0
        data = getattr(response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        if status == 429 or status >= 500 or error in TRANSIENT_ERRORS or not isinstance(data, dict):
            return Unavailable(f"slack: {status} {error or 'unavailable'}",
                               retry_after(getattr(response, "headers", None)))
        return Refused(f"slack: {error or status}")
    return Unavailable(f"slack unreachable: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------------
# Queue tasks: one pair per huey instance, bound to the process's Notifier
# ---------------------------------------------------------------------------------------------------


class _SlackTasks:
    """The delivery task and the periodic sweep on one huey; they call the bound :class:`Notifier`."""

    def __init__(self, huey: Huey):
        self.notifier: Notifier | None = None
        self.deliver = huey.task(name=DELIVER_TASK)(self._deliver)
        self.sweep = huey.periodic_task(crontab(minute="*"), name=SWEEP_TASK)(self._sweep)

    def _deliver(self, repo: str, pr_number: int | None, channel: str) -> None:
        if self.notifier is None:
            raise RuntimeError("a Slack delivery reached a process without a Notifier")
        self.notifier.deliver(repo, pr_number, channel)

    def _sweep(self) -> None:
        if self.notifier is not None:
            self.notifier.sweep()


_TASKS: weakref.WeakKeyDictionary[Huey, _SlackTasks] = weakref.WeakKeyDictionary()


def _tasks_for(huey: Huey) -> _SlackTasks:
    """The Slack tasks of ``huey``, registered on first use (huey refuses a name registered twice)."""
    tasks = _TASKS.get(huey)
    if tasks is None:
        tasks = _TASKS[huey] = _SlackTasks(huey)
    return tasks


# ---------------------------------------------------------------------------------------------------
# The notifier
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery run did: messages sent and refused, and the delay it was postponed by."""

    sent: int = 0
    failed: int = 0
    postponed: float | None = None
    summary_updated: bool = False


RepoRouting = Callable[[str], SlackRouting | dict[str, Any] | None]
PullLookup = Callable[[Any], PullContext | None]


class Notifier:
    """Route and persist events (:meth:`notify`), and deliver them from the queue (:meth:`deliver`).

    ``store`` is the :class:`~modelherd.store.Store`; ``queue`` a :class:`~modelherd.queue.JobQueue`
    (its huey carries the Slack tasks); ``settings`` the ``slack`` settings (``None``: notify does
    nothing).  ``repo_routing(repo)`` may give a repository's own routing (``.modelherd.yaml``).
    Constructing a Notifier binds this process's Slack jobs to it.
    """

    def __init__(self, store: Any, queue: Any, settings: SlackSettings | None, *, client: WebClient | None = None,
                 repo_routing: RepoRouting | None = None, give_up_after: timedelta = GIVE_UP_AFTER,
                 backoff_base: float = BACKOFF_BASE, backoff_cap: float = BACKOFF_CAP,
                 mutex_wait: float = 10.0):
        self.store: SlackRepo = slack_repo(store)
        self.settings = settings
        self.queue = queue
        self.repo_routing = repo_routing
        self.give_up_after, self.backoff_base, self.backoff_cap = give_up_after, backoff_base, backoff_cap
        self.mutex_wait = mutex_wait
        self._client = client
        self._channel_ids: dict[str, str] = {}     # channel name → id, as Slack listed it
        self.tasks = _tasks_for(queue.huey)
        self.tasks.notifier = self

    @property
    def client(self) -> WebClient:
        """The Web API client (built on first use, so the web process never needs one)."""
        if self._client is None:
            if self.settings is None:
                raise RuntimeError("Slack is not configured")
            self._client = make_client(self.settings)
        return self._client

    @property
    def prominent(self) -> tuple[str, ...]:
        return tuple(self.settings.prominent_environments) if self.settings else DEFAULT_PROMINENT

    # -- caller side -------------------------------------------------------------------------------
    def notify(self, event: SlackEvent, repo_config: SlackRouting | dict[str, Any] | None = None) -> int | None:
        """Route, persist and enqueue ``event``; the outbox id, or ``None`` (not routed, a duplicate key,
        or an error, which is logged).  Never raises and never calls Slack."""
        try:
            channel = route(event, self.settings, self._repo_config(event.repo, repo_config))
            if channel is None:
                return None
            message_id = self.store.slack_enqueue(f"{event.key}@{channel}", repo=event.repo,
                                                  pr_number=event.pr_number, channel=channel,
                                                  payload=event.to_json())
            if message_id is not None:
                self.enqueue((event.repo, event.pr_number, channel))
            return message_id
        except Exception:
            log.exception("slack: could not queue %s for %s", event.kind, event.repo)
            return None

    def rollout_notifier(self, pull: PullLookup | None = None) -> Callable[[Any, Any], None]:
        """A ``notify(record, event)`` for :class:`~modelherd.rollout.RolloutWorker`; ``pull(record)``
        may add the pull request's URL, title, author and links."""
        def notify_rollout(record: Any, event: Any) -> None:
            self.notify_rollout(record, event, pull(record) if pull else None)
        return notify_rollout

    def notify_rollout(self, record: Any, event: Any, pull: PullContext | None = None) -> int | None:
        """:meth:`notify` the Slack event of one rollout log entry, if it makes one."""
        try:
            slack_event = rollout_event(record, event, pull)
        except Exception:
            log.exception("slack: could not describe rollout %s event %s", record.id, event.id)
            return None
        return self.notify(slack_event) if slack_event is not None else None

    def enqueue(self, group: Group, delay: float | None = None) -> None:
        """Put a delivery of ``group`` on the queue (a failure is logged: the sweep will find it)."""
        try:
            if delay:
                self.tasks.deliver.schedule(args=group, delay=delay)
            else:
                self.tasks.deliver(*group)
        except Exception:
            log.exception("slack: could not enqueue delivery of %s", group)

    def _repo_config(self, repo: str, given: Any) -> Any:
        if given is not None or self.repo_routing is None:
            return given
        try:
            return self.repo_routing(repo)
        except Exception:
            log.exception("slack: repo routing of %s failed; using the server's", repo)
            return None

    # -- worker side -------------------------------------------------------------------------------
    def sweep(self) -> list[Group]:
        """Enqueue every thread with messages due (periodic; recovers lost queue messages)."""
        try:
            groups = self.store.slack_due_groups()
        except Exception:
            log.exception("slack: sweep failed")
            return []
        for group in groups:
            self.enqueue(group)
        return groups

    def deliver(self, repo: str, pr_number: int | None, channel: str) -> DeliveryResult:
        """The job: send the group's pending messages.  Never raises; reschedules itself when needed."""
        group: Group = (repo, pr_number, channel)
        try:
            with self.store.mutex(f"slack:{repo}#{pr_number if pr_number is not None else '-'}:{channel}",
                                  ttl=300.0, wait=self.mutex_wait):
                return self._deliver(group)
        except Busy:
            self.enqueue(group, BUSY_DELAY)
            return DeliveryResult(postponed=BUSY_DELAY)
        except Unavailable as exc:
            return self._postpone(group, exc)
        except Exception as exc:
            log.exception("slack: delivery of %s failed", group)
            return self._postpone(group, Unavailable(f"{type(exc).__name__}: {exc}"))

    def _deliver(self, group: Group) -> DeliveryResult:
        pending = self.store.slack_pending(*group)
        if pending and pending[0].next_attempt_at > self.store.now():
            return DeliveryResult(postponed=(pending[0].next_attempt_at - self.store.now()).total_seconds())
        if group[1] is None:
            return self._send_loose(pending)
        return self._send_thread(group, pending)

    def _postpone(self, group: Group, exc: Unavailable) -> DeliveryResult:
        """Slack is unavailable: hold the group's messages and schedule the job again (or give up on
        messages older than ``give_up_after``)."""
        try:
            expired = self.store.slack_expire(group, older_than=self.store.now() - self.give_up_after,
                                              error=f"gave up: {exc}")
            if expired:
                log.error("slack: dropped %d message(s) of %s after %s: %s", expired, group, self.give_up_after, exc)
            attempts = max((p.attempts for p in self.store.slack_pending(*group)), default=0)
            delay = max(min(self.backoff_cap, self.backoff_base * 2 ** attempts), exc.retry_after or 0)
            self.store.slack_postpone(group, delay=delay, error=str(exc))
        except Exception:
            log.exception("slack: could not record the failed delivery of %s", group)
            delay = self.backoff_base
        log.warning("slack: %s; delivery of %s again in %.0fs", exc, group, delay)
        self.enqueue(group, delay)
        return DeliveryResult(postponed=delay)

    # -- sending -----------------------------------------------------------------------------------
    def _send_loose(self, pending: list[OutboxRecord]) -> DeliveryResult:
        """Messages without a pull request: each one straight to the channel."""
        sent = failed = 0
        for item in pending:
            event = SlackEvent.from_json(item.payload)
            try:
                ts, _ = self._post_once(f"slack-post:{item.id}", item.channel, detail_message(event, self.prominent),
                                        after=self.store.slack_last_ts((item.repo, None, item.channel)))
            except Refused as exc:
                self.store.slack_mark_failed(item.id, str(exc))
                failed += 1
                continue
            self.store.slack_mark_sent(item.id, ts)
            sent += 1
        return DeliveryResult(sent=sent, failed=failed)

    def _send_thread(self, group: Group, pending: list[OutboxRecord]) -> DeliveryResult:
        """Open the thread if needed, reply with each message, then bring the summary up to date."""
        repo, pr_number, channel = group
        thread = self.store.slack_thread(repo, pr_number, channel)
        summary = thread.summary if thread else new_summary(repo, pr_number)
        sent = failed = 0
        for item in pending:
            event = SlackEvent.from_json(item.payload)
            summary = fold(summary, event)
            if thread is None or thread.thread_ts is None:
                try:
                    thread = self._open_thread(group, summary)
                except Refused as exc:
                    return self._refuse_all(pending, exc)
            try:
                ts, _ = self._post_once(f"slack-post:{item.id}", thread.channel_id or channel,
                                        detail_message(event, self.prominent), thread_ts=thread.thread_ts,
                                        after=self.store.slack_last_ts(group) or thread.thread_ts)
            except Refused as exc:
                self.store.slack_mark_failed(item.id, str(exc))
                self.store.slack_save_thread(repo, pr_number, channel, summary=summary)
                failed += 1
                continue
            self.store.slack_mark_sent(item.id, ts, thread=thread, summary=summary)
            sent += 1
        updated = self._refresh_summary(thread, summary) if thread is not None else False
        return DeliveryResult(sent=sent, failed=failed, summary_updated=updated)

    def _open_thread(self, group: Group, summary: dict[str, Any]) -> ThreadRecord:
        """Post the summary as the thread's first message and keep its ``ts``."""
        repo, pr_number, channel = group
        message = summary_message(summary)
        ts, channel_id = self._post_once(f"slack-open:{repo}#{pr_number}@{channel}", channel, message)
        return self.store.slack_save_thread(repo, pr_number, channel, summary=summary, channel_id=channel_id,
                                            thread_ts=ts, summary_hash=message.digest())

    def _refresh_summary(self, thread: ThreadRecord, summary: dict[str, Any]) -> bool:
        """``chat.update`` the summary when its content changed; whether it did."""
        message = summary_message(summary)
        digest = message.digest()
        if digest == thread.summary_hash:
            return False
        try:
            self._call(self.client.chat_update, channel=thread.channel_id or thread.channel, ts=thread.summary_ts,
                       text=message.text, blocks=message.blocks)
        except Refused as exc:  # the summary was deleted or can no longer be edited: keep replying
            log.warning("slack: summary of %s#%s not updated: %s", thread.repo, thread.pr_number, exc)
        self.store.slack_save_thread(thread.repo, thread.pr_number, thread.channel, summary=summary,
                                     summary_hash=digest)
        return True

    def _refuse_all(self, pending: list[OutboxRecord], exc: Refused) -> DeliveryResult:
        """The thread cannot be opened (unknown channel…): none of its messages can be sent."""
        log.error("slack: %s; dropping %d message(s) for %s", exc, len(pending), pending[0].channel)
        for item in pending:
            self.store.slack_mark_failed(item.id, str(exc))
        return DeliveryResult(failed=len(pending))

    def _post_once(self, attempt: str, channel: str, message: Message, *, thread_ts: str | None = None,
                   after: str | None = None) -> tuple[str, str]:
        """:meth:`_post`, unless an earlier ``attempt`` posted the message already (its answer lost): then
        the message found in the thread (or the channel) after ``after`` is taken instead."""
        once = getattr(self.store, "once", None)
        if once is not None and not once(attempt):
            try:
                found = self._find_posted(channel, message.text, thread_ts=thread_ts, after=after)
            except Refused as exc:       # e.g. an app without the history scopes: post rather than drop
                log.warning("slack: cannot look for %s of an earlier attempt (%s); it may be posted twice",
                            attempt, exc)
                found = None
            if found is not None:
                log.info("slack: %s was posted by an earlier attempt (%s)", attempt, found[0])
                return found
        try:
            return self._post(channel, message, thread_ts=thread_ts)
        except Refused:                  # a definite answer: nothing was posted, a later attempt need not look
            if once is not None:
                self.store.forget_effect(attempt)
            raise

    def _find_posted(self, channel: str, text: str, *, thread_ts: str | None,
                     after: str | None) -> tuple[str, str] | None:
        """(ts, channel id) of a message with ``text`` posted after ``after``: a reply of ``thread_ts``, or a
        message of the channel; None when there is none."""
        channel_id = self._channel_id(channel)
        if channel_id is None:
            log.warning("slack: channel %s not found; %r may be posted twice", channel, text[:80])
            return None
        window = {"oldest": after} if after else {}
        if thread_ts:
            answer = self._call(self.client.conversations_replies, channel=channel_id, ts=thread_ts, limit=200,
                                **window)
            messages = [m for m in answer.get("messages") or [] if m.get("ts") != thread_ts]
        else:
            answer = self._call(self.client.conversations_history, channel=channel_id, limit=100, **window)
            messages = answer.get("messages") or []
        for found in messages:
            if found.get("text") == text and (after is None or float(found["ts"]) > float(after)):
                return str(found["ts"]), channel_id
        return None

    def _channel_id(self, channel: str) -> str | None:
        """The id of a routed channel (``#name``, ``name`` or an id): as given, remembered, or listed."""
        if channel[:1] in ("C", "G") and channel[1:].isalnum() and channel.isupper():
            return channel
        name = channel.lstrip("#")
        known = self._channel_ids.get(name) or self.store.slack_channel_id(channel)
        if known:
            return known
        cursor = None
        while True:
            answer = self._call(self.client.conversations_list, types="public_channel,private_channel",
                                exclude_archived=True, limit=200, **({"cursor": cursor} if cursor else {}))
            for found in answer.get("channels") or []:
                self._channel_ids[found.get("name", "")] = found["id"]
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if name in self._channel_ids or not cursor:
                return self._channel_ids.get(name)

    def _post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> tuple[str, str]:
        """``chat.postMessage``; (ts, channel id)."""
        kwargs: dict[str, Any] = {"channel": channel, "text": message.text, "blocks": message.blocks,
                                  "unfurl_links": False, "unfurl_media": False}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
            if message.broadcast:
                kwargs["reply_broadcast"] = True
        response = self._call(self.client.chat_postMessage, **kwargs)
        return response["ts"], response["channel"]

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """One Web API call (slack-sdk retries inside); failures become :class:`Unavailable` or :class:`Refused`."""
        started = monotonic()
        try:
            return method(**kwargs)
        except Exception as exc:
            outcome = classify(exc)
            log.debug("slack: %s after %.1fs", outcome, monotonic() - started)
            raise outcome from exc


__all__ = ["BoundedRateLimitRetryHandler", "DeliveryResult", "Notifier", "Refused", "Unavailable", "classify",
           "make_client", "retry_handlers"]
