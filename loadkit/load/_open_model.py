"""The open model in the Locust child: one process's share of an arrival schedule, each arrival one
task of a Locust user, its first request counted from the intended start. The schedule itself
(which arrival when, the in-flight bound, drops) is loadkit.load._arrivals, gevent-free; this module
is its gevent side, imported only by the Locust plugin.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
from locust import TaskSet, User
from locust.env import Environment
from locust.exception import InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately, StopUser

from loadkit.load._arrivals import Scheduler
from loadkit.load._window import Window
from loadkit.load.shapes import RateStage, arrival_times

DRAIN_S = 2.0  # after a process's last arrival, iterations still running may finish for this long
logger = logging.getLogger("loadkit")


def from_intended_start(record: Any) -> Any:
    """Open model: the first request of an iteration counts from the iteration's intended start.

    The iteration's greenlet carries its start lag (`OpenModel.iterate`); the request event fires
    in that greenlet, whichever client sent it, so the lag is added once and then cleared. An iteration
    cut off at the end (`OpenModel.end`) was already recorded: a request it reports while dying is not.
    """
    getcurrent = gevent.getcurrent

    def on_request(request_type: str, name: str, response_time: float, response_length: int,
                   response: Any = None, context: Any = None, exception: Any = None, **_kw: Any) -> None:
        current = getcurrent()
        if getattr(current, "loadkit_cut", False):
            return
        lag = getattr(current, "loadkit_lag_ms", 0.0)
        if lag:
            current.loadkit_lag_ms = 0.0
            response_time += lag
        record(request_type, name, response_time, response_length, response, context, exception)

    return on_request


def nested_task_sets(user_classes: list[type[User]]) -> list[str]:
    """'User.TaskSet' for every TaskSet among the users' tasks: its run() loops forever, so it cannot be
    one iteration of an open-model run."""
    return [f"{cls.__name__}.{task.__name__}" for cls in user_classes for task in dict.fromkeys(cls.tasks)
            if isinstance(task, type) and issubclass(task, TaskSet)]


class OpenModel:
    """One Locust process's share of the arrival schedule, each arrival one task of a Locust user.

    Users (k6's VUs) are created when needed, `on_start` once each, and reused: an iteration takes a
    free user of a class picked by weight, runs one of its tasks picked by weight, and gives it back.
    """

    def __init__(self, environment: Environment, window: Window, stages: list[RateStage], *,
                 share: Callable[[], tuple[int, int]], max_in_flight: int, max_lateness_s: float) -> None:
        """`share()`: (this process's index, how many processes split the schedule), asked at test start."""
        self.environment = environment
        self.window = window
        self.stages = stages
        self.share = share
        self.classes = list(environment.user_classes)
        self.weights = [max(0.0, float(getattr(c, "weight", 1) or 0)) for c in self.classes]
        self.free: dict[type[User], list[User]] = {c: [] for c in self.classes}
        self.group = gevent.pool.Group()
        self.created = 0
        self.errors_logged = 0
        self.done_at: float | None = None
        self.scheduler = Scheduler(
            iter(()), recorder=window, clock=time.perf_counter, sleep=gevent.sleep, start=self.start,
            max_in_flight=max_in_flight, max_lateness_s=max_lateness_s,
        )

    @property
    def busy(self) -> int:
        return self.scheduler.in_flight

    @property
    def finished(self) -> bool:
        """The whole share started (or dropped), and its iterations ended or had their drain time."""
        if not self.scheduler.done:
            return False
        if self.done_at is None:
            self.done_at = time.monotonic()
        return self.scheduler.in_flight == 0 or time.monotonic() - self.done_at > DRAIN_S

    def begin(self, **_kw: Any) -> None:
        gevent.spawn(self._run, time.perf_counter())

    def _run(self, t0: float) -> None:
        # Each process starts its share when Locust starts it (a worker: on its first spawn message,
        # within milliseconds of the others on one host); which arrivals are its share is exact.
        index, count = self.share()
        for cls in self.classes:
            if self.environment.host:
                cls.host = self.environment.host
        self.scheduler.times = arrival_times(self.stages, index, count)
        self.scheduler.run(t0)

    def end(self, **_kw: Any) -> None:
        """Stop arriving; iterations still running (after the drain time) are cut off.

        One running for longer than the allowed lateness counts as a cut-off iteration, once in the
        latencies at its age now (from its intended start): a lower bound of its latency. Killed
        unrecorded, a target that stalls at the end of a run would pass on the requests that did answer.
        A younger one was cut by the stop itself (a run stopped from outside mid-schedule: an interrupt,
        a continuous webhook run's end), not by a stall: it is not recorded, like an arrival not yet due.
        """
        self.scheduler.stop()
        now = time.perf_counter()
        for greenlet in list(self.group):
            intended = getattr(greenlet, "loadkit_intended", None)
            if intended is not None and not greenlet.dead:
                greenlet.loadkit_cut = True
                if now - intended > self.scheduler.max_lateness_s:
                    self.window.cut_off_iteration((now - intended) * 1000.0)
        self.group.kill(block=True, timeout=5.0)

    def start(self, intended: float) -> None:
        self.group.spawn(self.iterate, intended)

    def iterate(self, intended: float | None) -> None:
        current = gevent.getcurrent()
        while intended is not None:
            current.loadkit_intended = intended  # type: ignore[attr-defined]
            current.loadkit_lag_ms = (time.perf_counter() - intended) * 1000.0  # type: ignore[attr-defined]
            try:
                self.run_one()
            finally:  # whatever ended the iteration, its slot passes on (or frees): none leaks
                current.loadkit_intended = None  # type: ignore[attr-defined]
                intended = self.scheduler.next_waiting()

    def run_one(self) -> None:
        cls = self.classes[0] if len(self.classes) == 1 else random.choices(self.classes, self.weights)[0]
        free = self.free[cls]
        user = free.pop() if free else self._new_user(cls)
        if user is None:
            return
        try:
            task: Any = random.choice(user.tasks)  # weight-expanded; TaskSets were refused at start
            task(user)
        except (RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet):
            pass
        except StopUser:
            return  # that user is done; the next iteration creates another
        except Exception as exc:
            self._user_error(user, exc)
        free.append(user)

    def _new_user(self, cls: type[User]) -> User | None:
        """A new user of `cls`, `on_start` run; None (the iteration counted as an exception) if its
        constructor or on_start raised."""
        try:
            user = cls(self.environment)
        except Exception as exc:
            self._user_error(None, exc, f"{cls.__name__}()")
            return None
        self.created += 1
        try:
            user.on_start()
        except StopUser:
            return None
        except Exception as exc:
            self._user_error(user, exc, f"{cls.__name__}.on_start")
            return None
        return user

    def _user_error(self, user: User | None, exc: Exception, where: str = "") -> None:
        self.environment.events.user_error.fire(user_instance=user, exception=exc, tb=exc.__traceback__)
        if self.errors_logged < 5:
            self.errors_logged += 1
            logger.error("loadkit: %s raised %s: %s", where or f"{type(user).__name__}'s task", type(exc).__name__,
                         exc)
