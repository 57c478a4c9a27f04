"""Slack notifications: messages, routing, the thread model, and delivery through a fake Slack over HTTP.

The fake (:mod:`tests.fakes.slack`) validates every call against Slack's Web API description and
records what a reader would see; slack-sdk's ``WebClient`` talks to it over real HTTP with its retry
handlers.  Rollout events come from the real rollout engine driven by ``tests.test_rollout``'s rig.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelherd.queue import JobQueue
from modelherd.rollout import rollback_to
from modelherd.settings import SlackChannels, SlackRouting, SlackSettings
from modelherd.slack import Kind, Links, Notifier, PullContext, SlackEvent, route
from modelherd.slack.messages import detail_message, fold, new_summary, summary_message
from modelherd.slack.notifier import make_client
from modelherd.store import Store
from modelherd.store.slack import slack_repo
from tests.clock import FIXED, Clock
from tests.rollout_rig import REPO, Rig, deployment, version

if TYPE_CHECKING:
    from tests.fakes.slack import FakeSlack, Posted


PR = 7
PR_URL = f"https://github.com/{REPO}/pull/{PR}"
_names = itertools.count()


# -- fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(FIXED)


@pytest.fixture
def slack_store(tmp_path: Path, clock: Clock) -> Any:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def queue() -> Any:
    q = JobQueue.from_url("memory://", name=f"slack-test-{next(_names)}")
    yield q
    q.flush()


def settings_for(fake: FakeSlack, **kw: Any) -> SlackSettings:
    kw.setdefault("default_channel", "#deploys")
    return SlackSettings(token=fake.token, base_url=fake.base_url, **kw)


def make_notifier(store: Any, queue: Any, fake: FakeSlack, **kw: Any) -> Notifier:
    settings = kw.pop("settings", None) or settings_for(fake)
    client = make_client(settings, retry_interval=0.01)
    return Notifier(store, queue, settings, client=client, **kw)


def event(kind: str, key: str, **kw: Any) -> SlackEvent:
    defaults: dict[str, Any] = {"repo": REPO, "pr_number": PR, "pr_url": PR_URL, "pr_title": "Bump churn to v2",
                                "author": "alice", "model": "churn", "environment": "staging",
                                "version_from": "1", "version_to": "2"}
    defaults.update(kw)
    return SlackEvent(kind=kind, key=key, **defaults)


def run_scheduled(queue: JobQueue) -> int:
    """Run every scheduled job now (as the consumer would once they are due); how many."""
    far = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=2)
    tasks = queue.huey.read_schedule(far)
    for task in tasks:
        queue.huey.execute(task, timestamp=far)
    return len(tasks)


def texts(message: Posted) -> list[str]:
    return [message.text or "", *message.mrkdwn()]


class SlackRig(Rig):
    """The rollout test rig whose engine notifies Slack too."""

    def __init__(self, store: Store, notifier: Notifier):
        super().__init__(store, clock=store.clock if isinstance(store.clock, Clock) else None)
        self.slack = notifier.rollout_notifier(lambda record: PullContext(
            url=PR_URL, title="Bump churn to v2", author="alice",
            links=Links(deployment=f"https://github.com/{REPO}/deployments/{record.environment}",
                        registry=f"https://mlflow.example/#/models/churn-model/versions/{record.to_version}")))

    def notify(self, record: Any, event: Any) -> None:
        super().notify(record, event)
        self.slack(record, event)


# -- messages (pure) ------------------------------------------------------------------------------------


def test_detail_message_has_links_fallback_and_no_broadcast_for_staging_success() -> None:
    msg = detail_message(event(Kind.DEPLOY_SUCCEEDED, "k", links=Links(
        check="https://github.com/octo/models/runs/1", deployment="https://github.com/octo/models/deployments",
        registry="https://mlflow.example/#/models/churn-model/versions/2")))
    assert not msg.broadcast
    assert msg.text.startswith("octo/models#7: Deployed: churn in staging serves v2")
    context = msg.blocks[-1]["elements"][0]["text"]
    assert f"<{PR_URL}|PR #7>" in context and "|check>" in context and "|registry v2>" in context


def test_production_failure_is_prominent_and_staging_failure_is_not() -> None:
    prod = detail_message(event(Kind.DEPLOY_FAILED, "k", environment="production", text="step 2 failed"))
    staging = detail_message(event(Kind.DEPLOY_FAILED, "k", environment="staging", text="step 2 failed"))
    assert prod.broadcast and ":rotating_light:" in prod.blocks[0]["text"]["text"]
    assert prod.text.startswith("[PRODUCTION]")
    assert not staging.broadcast and ":warning:" in staging.blocks[0]["text"]["text"]
    rollback = detail_message(event(Kind.MANUAL_ROLLBACK, "k", environment="production", state="started"))
    assert rollback.broadcast


def test_summary_folds_events_per_environment() -> None:
    summary = new_summary(REPO, PR)
    for e in (event(Kind.PLAN_READY, "a", needs=("1 approval from @octo/risk",)),
              event(Kind.APPROVAL, "b", actor="bob"),
              event(Kind.DEPLOY_SUCCEEDED, "c"),
              event(Kind.DEPLOY_FAILED, "d", environment="production")):
        summary = fold(summary, e)
    msg = summary_message(summary)
    body = "\n".join(b["text"]["text"] for b in msg.blocks if b["type"] == "section")
    assert "Plan approved" in body
    assert "churn · staging: v1 → v2, deployed" in body
    assert "churn · production: v1 → v2, failed, rolling back" in body
    assert msg.digest() != summary_message(new_summary(REPO, PR)).digest()


def test_untrusted_link_targets_are_dropped() -> None:
    msg = detail_message(event(Kind.DEPLOY_STARTED, "k", pr_url="javascript:alert(1)",
                               links=Links(check="https://x.example/a?b=1&c=<2>|3")))
    context = msg.blocks[-1]["elements"][0]["text"]
    assert "javascript" not in context
    assert "<https://x.example/a?b=1&amp;c=%3C2%3E%7C3|check>" in context


# -- routing (pure) -------------------------------------------------------------------------------------


ROUTED = SlackSettings(
    token="xoxb-t", default_channel="#deploys",
    channels=SlackChannels(environments={"production": "#prod-deploys"}, teams={"@octo/risk-ml": "#risk-ml"},
                           kinds={"drift_found": "#model-drift"}),
    repos={"octo/quiet": SlackRouting(enabled=False), "octo/other": SlackRouting(default_channel="#other")})


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, "#deploys"),                                                             # default
    ({"environment": "Production"}, "#prod-deploys"),                             # per environment
    ({"owners": ("alice", "@Octo/Risk-ML")}, "#risk-ml"),                         # per owner team
    ({"owners": ("@octo/risk-ml",), "environment": "production"}, "#risk-ml"),    # team beats environment
    ({"kind": Kind.DRIFT, "owners": ("@octo/risk-ml",)}, "#model-drift"),         # kind beats team
    ({"repo": "octo/other"}, "#other"),                                           # per-repo default
    ({"repo": "octo/other", "environment": "production"}, "#prod-deploys"),       # rule beats repo default
    ({"repo": "Octo/Quiet"}, None),                                               # a repo that sends nothing
])
def test_routing(kw: dict[str, Any], expected: str | None) -> None:
    kind = kw.pop("kind", Kind.DEPLOY_STARTED)
    assert route(event(kind, "k", **kw), ROUTED) == expected


def test_repo_config_routes_and_mutes() -> None:
    e = event(Kind.DEPLOY_FAILED, "k", environment="production")
    assert route(e, ROUTED, {"channels": {"environments": {"production": "#models-prod"}}}) == "#models-prod"
    assert route(e, ROUTED, SlackRouting(enabled=False)) is None
    assert route(e, None) is None                                      # Slack not configured
    assert route(e, SlackSettings(token="t")) is None                  # no channel matches


def test_muted_repo_persists_nothing(slack_store: Store, queue: JobQueue, fake_slack: FakeSlack) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack,
                             settings=settings_for(fake_slack, repos={REPO: SlackRouting(enabled=False)}))
    assert notifier.notify(event(Kind.DEPLOY_FAILED, "k", environment="production")) is None
    assert slack_repo(slack_store).slack_messages() == [] and queue.pending_count() == 0


# -- the thread model -----------------------------------------------------------------------------------


def test_one_thread_per_pull_request_with_the_summary_updated_in_place(
        store: Store, queue: JobQueue, fake_slack: FakeSlack) -> None:
    notifier = make_notifier(store, queue, fake_slack)
    notifier.notify(event(Kind.PLAN_READY, "plan:abc", needs=("1 approval from @octo/risk-ml",)))
    queue.drain()
    for key, kind, kw in [("approve", Kind.APPROVAL, {"actor": "bob"}),
                          ("start", Kind.DEPLOY_STARTED, {}),
                          ("done", Kind.DEPLOY_SUCCEEDED, {})]:
        notifier.notify(event(kind, key, **kw))
        queue.drain()
    tops = fake_slack.top_level()
    assert len(tops) == 1, fake_slack.transcript()
    summary = tops[0]
    replies = fake_slack.replies(summary)
    assert [r.text.split(": ", 1)[1] for r in replies] == [
        "Plan ready; waiting on 1 item(s)", "Approved by bob: ready to deploy",
        "Deploy started: churn in staging, v1 → v2", "Deployed: churn in staging serves v2"]
    assert not any(r.reply_broadcast for r in replies)
    assert len(summary.updates) == 3 and len(fake_slack.calls_of("chat.update")) == 3
    assert "churn · staging: v1 → v2, deployed" in "\n".join(summary.mrkdwn())
    assert "Plan approved" in "\n".join(summary.mrkdwn())
    thread = slack_repo(store).slack_thread(REPO, PR, "#deploys")
    assert thread.thread_ts == summary.ts and thread.channel_id == "C0DEPLOYS1"
    assert all(m.state == "sent" and m.ts for m in slack_repo(store).slack_messages())


def test_events_without_a_pull_request_go_to_the_channel(slack_store: Store, queue: JobQueue,
                                                         fake_slack: FakeSlack) -> None:
    settings = settings_for(fake_slack, channels=SlackChannels(kinds={"drift_found": "#model-drift"}))
    notifier = make_notifier(slack_store, queue, fake_slack, settings=settings)
    notifier.notify(event(Kind.DRIFT, "drift:churn:production:1", pr_number=None, pr_url=None,
                          environment="production", version_from="2", version_to="1",
                          text="serving v1, manifest says v2"))
    queue.drain()
    (message,) = fake_slack.messages
    assert message.channel == "C0DRIFT001" and not message.is_reply
    assert ":rotating_light: *Drift found: churn in production" in message.mrkdwn()[0]


# -- never in the way -----------------------------------------------------------------------------------


def test_rate_limit_with_retry_after_then_success(slack_store: Store, queue: JobQueue,
                                                  fake_slack: FakeSlack) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack)
    fake_slack.rate_limit(times=1, retry_after=1)
    notifier.notify(event(Kind.DEPLOY_STARTED, "start"))
    queue.drain()
    assert [(c.method, c.status) for c in fake_slack.calls] == [
        ("chat.postMessage", 429), ("chat.postMessage", 200), ("chat.postMessage", 200)]
    assert len(fake_slack.messages) == 2                     # summary + the reply, once each


def test_a_long_retry_after_goes_back_to_the_queue(slack_store: Store, queue: JobQueue, fake_slack: FakeSlack,
                                                   clock: Clock) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack)
    fake_slack.rate_limit(times=1, retry_after=120)
    notifier.notify(event(Kind.DEPLOY_STARTED, "start"))
    queue.drain()
    assert fake_slack.messages == [] and queue.scheduled_count() == 1
    (pending,) = slack_repo(slack_store).slack_pending(REPO, PR, "#deploys")
    assert pending.attempts == 1 and pending.next_attempt_at >= clock.now + timedelta(seconds=120)
    clock.advance(121)
    assert run_scheduled(queue) == 1
    assert len(fake_slack.messages) == 2


def test_outage_during_a_rollout(slack_store: Store, queue: JobQueue, fake_slack: FakeSlack,
                                 clock: Clock) -> None:
    """Slack down for a whole rollout: the rollout succeeds, nothing raises, the messages arrive later."""
    store = slack_store
    notifier = make_notifier(store, queue, fake_slack)
    rig = SlackRig(store, notifier)
    fake_slack.outage()
    rid = rig.start(deployment(env="staging", canary=[25, 100]))
    assert rig.drive(rid).state == "succeeded"
    queue.drain()                                           # the delivery job meets the outage
    assert fake_slack.messages == [] and {c.status for c in fake_slack.calls} == {503}
    pending = slack_repo(store).slack_messages()
    assert [SlackEvent.from_json(m.payload).kind for m in pending] == ["deploy_started", "canary_step",
                                                                       "deploy_succeeded"]
    assert all(m.state == "pending" and m.attempts == 1 for m in pending)
    assert queue.scheduled_count() == 1

    fake_slack.recover()
    clock.advance(31)                                       # the backoff (30 s) is over
    assert run_scheduled(queue) == 1
    (summary,) = fake_slack.top_level()
    assert [r.text.split(": ", 1)[1] for r in fake_slack.replies(summary)] == [
        "Deploy started: churn in staging, v1 → v2", "Canary 25% verified: churn in staging (v1 → v2)",
        "Deployed: churn in staging serves v2"]
    assert "deployed" in summary.mrkdwn()[2]


def test_sweep_recovers_a_lost_queue_message(slack_store: Store, queue: JobQueue, fake_slack: FakeSlack) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack)
    notifier.notify(event(Kind.DEPLOY_STARTED, "start"))
    queue.flush()                                           # the queue lost the job
    assert fake_slack.messages == []
    assert notifier.sweep() == [(REPO, PR, "#deploys")]
    queue.drain()
    assert len(fake_slack.messages) == 2


def test_no_duplicate_when_a_job_or_a_notify_is_repeated(store: Store, queue: JobQueue,
                                                         fake_slack: FakeSlack) -> None:
    notifier = make_notifier(store, queue, fake_slack)
    e = event(Kind.DEPLOY_STARTED, "rollout:1:5")
    assert notifier.notify(e) is not None
    assert notifier.notify(e) is None                       # same key: nothing new
    queue.drain()
    notifier.deliver(REPO, PR, "#deploys")                  # the job delivered twice
    notifier.deliver(REPO, PR, "#deploys")
    assert len(fake_slack.messages) == 2                    # summary + one reply
    assert len(fake_slack.calls_of("chat.postMessage")) == 2


def test_a_job_retried_after_a_partial_failure_sends_only_the_rest(slack_store: Store, queue: JobQueue,
                                                                   fake_slack: FakeSlack, clock: Clock) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack)
    for key, kind in [("a", Kind.DEPLOY_STARTED), ("b", Kind.CANARY_STEP), ("c", Kind.DEPLOY_SUCCEEDED)]:
        notifier.notify(event(kind, key, percent=25 if kind == Kind.CANARY_STEP else None))
    calls = {"n": 0}
    original = fake_slack._fault

    def fail_from_the_third_call() -> Any:              # summary and "a" go through, then Slack breaks
        calls["n"] += 1
        if calls["n"] >= 3:
            return 503, "down", {}
        return original()

    fake_slack._fault = fail_from_the_third_call  # type: ignore[method-assign]
    queue.drain()
    assert len(fake_slack.messages) == 2
    fake_slack._fault = original  # type: ignore[method-assign]
    clock.advance(60)
    run_scheduled(queue)
    (summary,) = fake_slack.top_level()
    assert [r.text.split(": ", 1)[1].split(":")[0] for r in fake_slack.replies(summary)] == [
        "Deploy started", "Canary 25% verified", "Deployed"]


def test_a_crash_between_send_and_record_sends_that_message_once(slack_store: Store, queue: JobQueue,
                                                                 fake_slack: FakeSlack) -> None:
    """Slack took the message, the worker died before recording it: the retry finds it in the thread."""
    notifier = make_notifier(slack_store, queue, fake_slack)
    notifier.notify(event(Kind.DEPLOY_STARTED, "a"))
    repo = notifier.store
    original = repo.slack_mark_sent

    class Killed(BaseException):
        pass

    def killed_once(*args: Any, **kw: Any) -> None:
        repo.slack_mark_sent = original  # type: ignore[method-assign]
        raise Killed()

    repo.slack_mark_sent = killed_once  # type: ignore[method-assign]
    with pytest.raises(Killed):
        notifier.deliver(REPO, PR, "#deploys")
    notifier.deliver(REPO, PR, "#deploys")
    notifier.deliver(REPO, PR, "#deploys")
    (summary,) = fake_slack.top_level()
    assert len(fake_slack.replies(summary)) == 1
    assert all(m.state == "sent" for m in slack_repo(slack_store).slack_messages())


SLACK_WRITES = ("chat.postMessage", "chat.update")


def _lifecycle(tmp: Path, fake: FakeSlack, fail_at: int | None = None) -> list[str]:
    """A plan, a staging canary and a drift report in the channel, delivered through ``fake``; with
    ``fail_at``, that Slack write is carried out and answered 500. Returns the writes made."""
    clock = Clock(FIXED)
    store = Store.from_url(f"sqlite:///{tmp / 'store.db'}", clock=clock)
    store.upgrade()
    queue = JobQueue.from_url("memory://", name=f"slack-table-{next(_names)}")
    try:
        settings = settings_for(fake, channels=SlackChannels(kinds={"drift_found": "C0DRIFT001"}))
        notifier = make_notifier(store, queue, fake, settings=settings)
        if fail_at is not None:
            seen = itertools.count()
            fake.lose_next(match=lambda method, _args: method in SLACK_WRITES and next(seen) == fail_at)
        rig = SlackRig(store, notifier)
        notifier.notify(event(Kind.PLAN_READY, "plan:abc", needs=("1 approval from @octo/risk-ml",)))
        queue.drain()
        assert rig.drive(rig.start(deployment(env="staging", canary=[25, 100]))).state == "succeeded"
        notifier.notify(event(Kind.DRIFT, "drift:churn:production:1", pr_number=None, pr_url=None,
                              environment="production", version_from="2", version_to="1", text="serving v1"))
        for _ in range(8):                                  # the deliveries, and the retries they scheduled
            queue.drain()
            clock.advance(120)
            run_scheduled(queue)
        assert all(m.state == "sent" for m in slack_repo(store).slack_messages())
        return [c.method for c in fake.calls if c.method in SLACK_WRITES and c.error in (None, "lost")]
    finally:
        queue.flush()
        store.dispose()


def _reads_as(fake: FakeSlack) -> list[str]:
    """What a reader sees: each top-level message and its replies (text and blocks), without ts."""
    seen = []
    for top in fake.top_level():
        seen.append(f"{top.channel} {top.text} {top.blocks}")
        seen.extend(f"  ↳ {r.text} {r.blocks} {r.reply_broadcast}" for r in fake.replies(top))
    return seen


def test_a_lost_answer_after_each_slack_write_sends_each_message_once(tmp_path: Path) -> None:
    """For each Slack write of a clean run, a run where Slack carried it out and answered 500 reads the
    same: one summary per thread, each message once, the summary up to date."""
    from tests.fakes.slack import FakeSlack as Fake

    with Fake() as clean:
        (tmp_path / "clean").mkdir()
        writes = _lifecycle(tmp_path / "clean", clean)
        expected = _reads_as(clean)
        clean.assert_clean()
    assert writes.count("chat.postMessage") >= 5, writes
    failures = []
    for index, write in enumerate(writes):
        folder = tmp_path / f"fail-{index}"
        folder.mkdir()
        with Fake() as fake:
            try:
                _lifecycle(folder, fake, fail_at=index)
                seen = _reads_as(fake)
                assert seen == expected, f"{len(seen)} messages where a clean run has {len(expected)}:\n" + \
                    fake.transcript()
                fake.assert_clean()
            except Exception as exc:
                failures.append(f"write {index} ({write}) answered 500 after it was done: "
                                f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    assert not failures, f"{len(failures)} of {len(writes)} writes:\n" + "\n".join(failures)


def test_refused_messages_are_dropped_not_retried(slack_store: Store, queue: JobQueue,
                                                  fake_slack: FakeSlack) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack,
                             settings=settings_for(fake_slack, default_channel="#no-such-channel"))
    notifier.notify(event(Kind.DEPLOY_STARTED, "a"))
    queue.drain()
    (message,) = slack_repo(slack_store).slack_messages()
    assert message.state == "failed" and "channel_not_found" in message.error
    assert queue.scheduled_count() == 0


def test_notify_never_raises_even_when_the_store_is_gone(slack_store: Store, queue: JobQueue,
                                                         fake_slack: FakeSlack) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack)
    slack_store.engine.dispose()
    slack_store._sessions = None  # type: ignore[assignment]  # any store call now fails
    assert notifier.notify(event(Kind.DEPLOY_FAILED, "a", environment="production")) is None


# -- escaping -------------------------------------------------------------------------------------------


def test_user_text_cannot_mention_link_or_format(slack_store: Store, queue: JobQueue,
                                                 fake_slack: FakeSlack) -> None:
    notifier = make_notifier(slack_store, queue, fake_slack)
    nasty = "<!channel> @here <@U123> *bold* <https://evil.example|click> &"
    notifier.notify(event(Kind.DEPLOY_FAILED, "a", environment="production", text=f"description: {nasty}",
                          pr_title=nasty, author="<@U123>", model="churn <!here>", actor="@channel"))
    queue.drain()
    sent = [t for m in fake_slack.messages for t in texts(m)]
    joined = "\n".join(sent)
    for forbidden in ("<!channel>", "<!here>", "<@U123>", "<https://evil", "@here", "@channel"):
        assert forbidden not in joined, forbidden
    assert "&lt;!channel&gt;" in joined and "@\u200bhere" in joined and "&lt;@\u200bU123&gt;" in joined
    (summary,) = fake_slack.top_level()
    reply = fake_slack.replies(summary)[0]
    plain = [b["text"] for b in reply.blocks if b["type"] == "section" and b["text"]["type"] == "plain_text"]
    assert plain and "*bold*" in plain[0]["text"]           # plain_text: shown as typed, never bold


# -- a full pull request lifecycle ----------------------------------------------------------------------


def test_full_lifecycle_reads_as_one_thread(store: Store, queue: JobQueue, fake_slack: FakeSlack,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Plan, approval, deploy to staging, production canary, failure, automatic rollback, /rollback."""
    notifier = make_notifier(store, queue, fake_slack)
    rig = SlackRig(store, notifier)
    check = f"https://github.com/{REPO}/runs/42"
    notifier.notify(event(Kind.PLAN_READY, "plan:abc1234", version_from=None, version_to=None,
                          model=None, environment=None, links=Links(check=check),
                          needs=("1 approval from @octo/risk-ml (production)", "check modelherd/policy is failing")))
    notifier.notify(event(Kind.APPROVAL, "approval:abc1234:bob", model=None, environment=None, actor="bob",
                          links=Links(check=check)))
    queue.drain()

    staging = rig.drive(rig.start(deployment(env="staging")))
    queue.drain()
    rig.target.fail.add(("2", 50))
    production = rig.drive(rig.start(deployment(env="production", canary=[10, 50, 100])))
    queue.drain()
    assert (staging.state, production.state) == ("succeeded", "rolled_back")

    rid = rollback_to(store, repo=REPO, dep=deployment(env="staging"), version=version(1), current=version(2),
                      actor="carol", pr=PR, reason="v2 misbehaves in production", clock=rig.clock)
    rig.drive(rid)
    queue.drain()

    (summary,) = fake_slack.top_level()
    replies = fake_slack.replies(summary)
    heads = [r.text.split(": ", 1)[1] for r in replies]
    assert heads == [
        "Plan ready; waiting on 2 item(s)",
        "Approved by bob: ready to deploy",
        "Deploy started: churn in staging, v1 → v2",
        "Deployed: churn in staging serves v2",
        "Deploy started: churn in production, v1 → v2",
        "Canary 10% verified: churn in production (v1 → v2)",
        "Deploy FAILED: churn in production (v1 → v2); rolling back",
        "Rolled back automatically: churn in production is back on v1",
        "Manual rollback started by carol: churn in staging to v1",
        "Manual rollback done by carol: churn in staging serves v1",
    ]
    broadcast = [r.text.split(": ", 1)[1] for r in replies if r.reply_broadcast]
    assert broadcast == ["Deploy FAILED: churn in production (v1 → v2); rolling back",
                         "Rolled back automatically: churn in production is back on v1"]
    rows = summary.mrkdwn()[2]
    assert "churn · staging: v1 → v2, rolled back manually to v1" in rows
    assert "churn · production: v1 → v2, rolled back" in rows
    with capsys.disabled():
        print("\n--- recorded by the fake Slack ---\n" + fake_slack.transcript())


def test_decommission_is_announced(slack_store: Store, queue: JobQueue, fake_slack: FakeSlack) -> None:
    from modelherd.decommission import start_decommission

    rig = SlackRig(slack_store, make_notifier(slack_store, queue, fake_slack))
    assert rig.drive(rig.start(frm=None, to=3)).state == "succeeded"
    rid = start_decommission(slack_store, repo=REPO, dep=deployment(env="staging"), current=version(3),
                             trigger="merge", actor="alice", pr=PR, sha="def5678", target="fake", clock=rig.clock)
    assert rig.drive(rid).state == "succeeded"
    queue.drain()
    (summary,) = fake_slack.top_level()
    texts = [r.text.split(": ", 1)[1] for r in fake_slack.replies(summary)]
    assert texts[-2:] == ["Decommission started: churn in staging (was v3)",
                          "Decommissioned: churn in staging (was v3)"]
    assert "churn · staging: v3 → nothing, decommissioned" in summary.mrkdwn()[2]


# -- scopes and channel membership, as Slack enforces them ------------------------------------------------


def test_the_bot_token_holds_the_scopes_of_the_slack_app_manifest() -> None:
    from tests.fakes.slack import FakeSlack, bot_scopes, load_slack_description, manifest_bot_scopes

    scopes = ["chat:write", "channels:history", "channels:read", "groups:history", "groups:read"]
    assert manifest_bot_scopes() == scopes
    spec = load_slack_description()
    assert bot_scopes(spec, "chat.postMessage") == bot_scopes(spec, "chat.update") == ["chat:write"]
    assert FakeSlack().scopes == scopes


def test_every_scope_of_the_manifest_is_used(slack_store: Store, queue: JobQueue, fake_slack: FakeSlack,
                                             clock: Clock) -> None:
    """The notifier's calls need every bot scope the manifest asks for, and nothing else (a method
    needing another scope would be answered missing_scope, and the message marked failed): posting and
    editing (chat:write), and after a post whose answer was lost, finding it in a public channel
    (channels:*) and in a private one (groups:*) before posting again."""
    for channel in ("#deploys", "#ml-private"):
        notifier = make_notifier(slack_store, queue, fake_slack,
                                 settings=settings_for(fake_slack, default_channel=channel))
        for key, kind in [("plan", Kind.PLAN_READY), ("start", Kind.DEPLOY_STARTED), ("done", Kind.DEPLOY_SUCCEEDED)]:
            if kind is not Kind.DEPLOY_SUCCEEDED:
                fake_slack.lose_next()                      # posted, but the answer is lost: look before posting
            notifier.notify(event(kind, f"{channel}:{key}", pr_number=PR + len(channel)))
            queue.drain()
            clock.advance(31)                               # the retry's backoff is over
            run_scheduled(queue)
    assert [c for c in fake_slack.calls if not c.ok and c.error != "lost"] == []
    assert fake_slack.scopes_used == set(fake_slack.scopes)
    assert len({(m.channel, m.text) for m in fake_slack.messages}) == len(fake_slack.messages)   # none twice


def test_a_token_without_chat_write_is_refused_with_slacks_missing_scope(slack_store: Store, queue: JobQueue) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    from tests.fakes.slack import FakeSlack

    with FakeSlack(scopes=["channels:read"]) as fake:
        with pytest.raises(SlackApiError) as refused:
            WebClient(token=fake.token, base_url=fake.base_url).chat_postMessage(channel="#deploys", text="hi")
        assert refused.value.response.data == {"ok": False, "error": "missing_scope", "needed": "chat:write",
                                               "provided": "channels:read"}
        assert refused.value.response.headers["X-Accepted-OAuth-Scopes"] == "chat:write"
        notifier = make_notifier(slack_store, queue, fake)
        notifier.notify(event(Kind.DEPLOY_STARTED, "a"))
        queue.drain()
        (message,) = slack_repo(slack_store).slack_messages()
        assert message.state == "failed" and "missing_scope" in message.error
        assert fake.messages == []
        fake.assert_clean()


def test_a_channel_the_bot_was_not_invited_to_is_refused(slack_store: Store, queue: JobQueue) -> None:
    from tests.fakes.slack import FakeSlack

    with FakeSlack(joined={"C0PRODOPS1"}) as fake:
        notifier = make_notifier(slack_store, queue, fake)
        notifier.notify(event(Kind.DEPLOY_STARTED, "a"))
        queue.drain()
        (message,) = slack_repo(slack_store).slack_messages()
        assert message.state == "failed" and "not_in_channel" in message.error
        fake.assert_clean()
    with FakeSlack(joined=set(), scopes=["chat:write", "chat:write.public"]) as fake:
        notifier = make_notifier(slack_store, queue, fake)
        notifier.notify(event(Kind.DEPLOY_STARTED, "b"))
        queue.drain()
        assert [m.channel for m in fake.messages] == ["C0DEPLOYS1", "C0DEPLOYS1"]    # the summary, the detail
        fake.assert_clean()


def test_an_app_without_the_history_scopes_still_delivers_after_a_lost_answer(slack_store: Store, queue: JobQueue,
                                                                              clock: Clock) -> None:
    """An app created with chat:write alone (before the look-up needed more) cannot look for a message whose
    answer was lost: it posts again rather than dropping the message."""
    from tests.fakes.slack import FakeSlack

    with FakeSlack(scopes=["chat:write"]) as fake:
        notifier = make_notifier(slack_store, queue, fake)
        fake.lose_next()
        notifier.notify(event(Kind.DEPLOY_STARTED, "a"))
        queue.drain()
        clock.advance(31)
        run_scheduled(queue)
        assert {m.state for m in slack_repo(slack_store).slack_messages()} == {"sent"}
        assert [c.error for c in fake.calls if not c.ok] == ["lost", "missing_scope"]
