"""Notifications on a game day's start, halt and finish: Slack incoming webhooks and plain JSON webhooks.

A URL on hooks.slack.com (or written `slack+https://...` for a Slack-compatible receiver) gets a
Slack message `{"text", "blocks"}`: score, verdict, the failing scenario, a link. Any other URL
gets `{"kind": "gameday.started|halted|finished", "result": {...}}` as JSON. A webhook URL is a
secret (its path is the token): only its host is ever printed, and it is never stored. A
notification that fails is a warning; it never fails the game day. Each destination gets at most
DEADLINE_S in all (the POST and its retry, a receiver that trickles its answer included): httpx's
timeout bounds each read, not the whole.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadkit.errors import UsageError
from loadkit.gameday.models import GameDayResult, GameDayVerdict, ScenarioStatus
from loadkit.units import fmt

ENV_SLACK = "LOADKIT_NOTIFY_SLACK"
ENV_WEBHOOK = "LOADKIT_NOTIFY_WEBHOOK"
TIMEOUT_S = 5.0
RETRY_AFTER_S = 0.5
DEADLINE_S = 10.0  # the whole of one notification to one destination, retry included


class Event(enum.StrEnum):
    STARTED = "gameday.started"
    HALTED = "gameday.halted"
    FINISHED = "gameday.finished"


@dataclass(frozen=True)
class Destination:
    url: str  # secret: never printed
    slack: bool

    @property
    def shown(self) -> str:
        """What may be printed: the host and the kind, never the path or a query."""
        return f"{'slack' if self.slack else 'webhook'} {httpx.URL(self.url).host}"


def destination(url: str) -> Destination:
    raw = url.strip()
    slack = raw.startswith("slack+")
    raw = raw.removeprefix("slack+")
    try:
        parsed = httpx.URL(raw)
    except httpx.InvalidURL:
        raise UsageError("a notification URL is not a URL (not shown: it may hold a token)",
                         hint="give http(s)://host/path, or slack+https://host/path for a Slack-compatible one") \
            from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"a notification URL must be http(s)://... (got scheme {parsed.scheme or 'none'!r}; the "
                         "rest is not shown: it may hold a token)", hint="give http(s)://host/path")
    return Destination(raw, slack or parsed.host == "hooks.slack.com")


def destinations(urls: Iterable[str], files: Iterable[Path], env: Mapping[str, str] | None = None) -> list[Destination]:
    """--notify URLs, --notify-file files (one URL a line, # comments) and $LOADKIT_NOTIFY_SLACK /
    $LOADKIT_NOTIFY_WEBHOOK, each once."""
    env = os.environ if env is None else env
    found = list(urls)
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read --notify-file {path}: {exc.strerror or exc}", hint="check the path") \
                from None
        found += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    slack = env.get(ENV_SLACK, "").strip()
    if slack:
        found.append(slack if slack.startswith("slack+") or "hooks.slack.com" in slack else f"slack+{slack}")
    if env.get(ENV_WEBHOOK, "").strip():
        found.append(env[ENV_WEBHOOK].strip())
    return [destination(u) for u in dict.fromkeys(found)]


class Notifier:
    """Sends each event to every destination; `say` gets progress and warnings (host only)."""

    def __init__(self, targets: list[Destination], say: Callable[[str], None], link: str | None = None,
                 post: Callable[..., httpx.Response] = httpx.post, deadline_s: float = DEADLINE_S) -> None:
        self.targets = targets
        self.say = say
        self.link = link
        self.deadline_s = deadline_s
        self._post = post

    def started(self, start: Start) -> None:
        self._send(Event.STARTED, lambda slack: started_slack(start, self.link) if slack else {
            "kind": Event.STARTED.value, "plan": start.plan, "target": start.target,
            "scenarios": list(start.scenarios), "started_at": start.started_at})

    def send(self, event: Event, result: GameDayResult) -> None:
        """`halted` or `finished`, with the result so far."""
        self._send(event, lambda slack: slack_body(event, result, self.link) if slack else generic_body(event, result))

    def _send(self, event: Event, body_for: Callable[[bool], dict[str, Any]]) -> None:
        for target in self.targets:
            body = body_for(target.slack)
            problem = self._deliver(target, body)
            if problem:
                self.say(f"loadkit: WARNING: notification {event.value} to {target.shown} failed: {problem} "
                         "(the game day goes on)")
            else:
                self.say(f"loadkit: notified {event.value} -> {target.shown}")

    def _deliver(self, target: Destination, body: dict[str, Any]) -> str | None:
        """None when delivered; else why not, without the URL (httpx's messages may contain it)."""
        problem = None
        deadline = time.monotonic() + self.deadline_s
        for attempt in range(2):  # one retry
            if attempt:
                time.sleep(RETRY_AFTER_S)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = self._post_within(target.url, body, left)
            except TimeoutError:
                return f"no complete answer within {fmt(self.deadline_s)}s (abandoned)"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if response.is_success:
                return None
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                return problem  # the receiver refused this body: sending it again changes nothing
        return problem


    def _post_within(self, url: str, body: dict[str, Any], seconds: float) -> httpx.Response:
        """The POST in a daemon thread, waited for `seconds` at most (TimeoutError after that: the
        thread is left to its read timeout; it can change nothing)."""
        box: dict[str, Any] = {}

        def post() -> None:
            try:
                box["response"] = self._post(url, json=body, timeout=min(TIMEOUT_S, seconds))
            except BaseException as exc:  # handed to the caller
                box["error"] = exc

        thread = threading.Thread(target=post, name="loadkit-gameday-notify", daemon=True)
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            raise TimeoutError
        if "error" in box:
            raise box["error"]
        response: httpx.Response = box["response"]
        return response


@dataclass(frozen=True)
class Start:
    plan: str
    target: str
    scenarios: tuple[str, ...]
    started_at: str


def started_slack(start: Start, link: str | None) -> dict[str, Any]:
    header = f"Game day {start.plan} started"
    summary = f"*Target* {start.target}  *Scenarios* {', '.join(start.scenarios)}"
    return {"text": f"{header} | {summary.replace('*', '')}", "blocks": _blocks(header, summary, [], link)}


def _blocks(header: str, summary: str, fields: list[str], link: str | None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": summary},
         **({"fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields]} if fields else {})},
    ]
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|report>"}]})
    return blocks


def generic_body(event: Event, result: GameDayResult) -> dict[str, Any]:
    return {"kind": event.value, "schema_version": result.schema_version, "result": result.model_dump(mode="json")}


def slack_body(event: Event, result: GameDayResult, link: str | None) -> dict[str, Any]:
    header = f"Game day {result.plan} {'HALTED' if event is Event.HALTED else 'finished'}"
    summary = f"*Score* {fmt(result.score)}  *Verdict* {result.verdict.value.upper()}"
    fields = []
    failing = [s for s in result.failing if s.status is not ScenarioStatus.SKIPPED]
    if failing:
        first = failing[0]
        fields.append(f"*Failing scenario* {first.name} ({first.status.value}: {first.reason or 'see the checks'})")
    if result.verdict is GameDayVerdict.HALTED and result.reason:
        fields.append(f"*Halted* {result.reason}")
    text = " | ".join([header, summary.replace("*", ""), *[f.replace("*", "") for f in fields]])
    return {"text": text, "blocks": _blocks(header, summary, fields, link)}
