"""Slack notifications: one readable thread per pull request, sent from the queue.

- :mod:`modelherd.slack.messages` (pure): :class:`SlackEvent` → Block Kit, the thread's summary, and
  the mapping from rollout log entries.
- :mod:`modelherd.slack.routing` (pure): which channel, from the server settings and the repo config.
- :mod:`modelherd.slack.notifier` (I/O): :class:`Notifier` persists events, the queue sends them.
"""

from modelherd.slack.messages import Kind, Links, PullContext, Severity, SlackEvent, rollout_event
from modelherd.slack.notifier import DeliveryResult, Notifier
from modelherd.slack.routing import route

__all__ = ["DeliveryResult", "Kind", "Links", "Notifier", "PullContext", "Severity", "SlackEvent", "route",
           "rollout_event"]
