"""The open-model scheduler of one Locust process: iterations start at their intended times.

No gevent here (only the plugin imports it): the plugin hands in its clock, sleep and spawn, so
the logic is tested with a fake clock. Semantics (docs/load.md, "Arrival rate"):

- Arrival k of the schedule starts at t0 + t_k whether or not earlier ones finished; with N
  processes process i takes k = i, i + N, ... so together they start exactly the schedule.
- At most `max_in_flight` iterations run at once (k6's maxVUs). An arrival that finds them all
  busy waits in a FIFO backlog and, when it starts, still counts from its intended time (wrk2).
- An arrival still waiting `max_lateness_s` after its intended time is dropped (k6's
  dropped_iterations) and recorded as a censored latency at its lateness; so are arrivals the
  scheduler itself reaches that late (its CPU is full), and arrivals still waiting when the run
  stops. Dropping alone would hide the stall that caused it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

_YIELD_EVERY = 64  # arrivals started back to back (behind schedule) before letting iterations run


class Recorder(Protocol):
    def started_iteration(self, lag_ms: float) -> None: ...

    def dropped_iteration(self, lateness_ms: float) -> None: ...


MAX_DEFAULT_IN_FLIGHT = 1000  # per process; --max-in-flight (or the profile's max_in_flight) raises it


def default_max_in_flight(peak_rate: float, processes: int = 1) -> int:
    """Iterations one process may run at once: two seconds of its share of the peak rate, at least 100
    and at most 1000.

    A target that stalls for a second at rate R needs about R iterations waiting on it; fewer would
    drop them, more costs memory and CPU (one Locust user and connection each): past 1000 it is the
    caller's choice (--max-in-flight), as k6 asks for maxVUs.
    """
    return min(MAX_DEFAULT_IN_FLIGHT, max(100, int(2 * peak_rate / max(1, processes)) + 1))


class Scheduler:
    """Starts arrivals on time; `start(intended)` runs one iteration (the plugin spawns a greenlet)."""

    def __init__(self, times: Iterator[float], *, recorder: Recorder, max_in_flight: int, max_lateness_s: float,
                 clock: Callable[[], float], sleep: Callable[[float], None],
                 start: Callable[[float], None]) -> None:
        self.times = times
        self.recorder = recorder
        self.max_in_flight = max_in_flight
        self.max_lateness_s = max_lateness_s
        self.clock = clock
        self.sleep = sleep
        self.start = start
        self.in_flight = 0
        self.backlog: deque[float] = deque()
        self.stopped = False
        self.done = False  # every arrival of the schedule was started or dropped
        self.t0: float | None = None

    def run(self, t0: float) -> None:
        """The scheduler's loop: returns when the schedule is over (or `stop` was called)."""
        self.t0 = t0
        behind = 0
        for offset in self.times:
            if self.stopped:
                return
            intended = t0 + offset
            now = self.clock()
            if intended > now:
                self.expire(now)
                self.sleep(intended - now)
                behind = 0
            elif (behind := behind + 1) % _YIELD_EVERY == 0:
                self.sleep(0)
                self.expire(self.clock())
            if self.stopped:  # while it slept: this arrival, already taken from the schedule, is due too
                now = self.clock()
                if intended <= now:
                    self.recorder.dropped_iteration((now - intended) * 1000.0)
                return
            self.arrive(intended)
        while self.backlog and not self.stopped:  # the last arrivals still wait for a free slot
            self.expire(self.clock())
            self.sleep(0.05)
        self.done = True

    def arrive(self, intended: float) -> None:
        late = self.clock() - intended
        if late > self.max_lateness_s:  # the scheduler itself fell behind (a full CPU): too late to start
            self.recorder.dropped_iteration(late * 1000.0)
        elif self.in_flight < self.max_in_flight and not self.backlog:
            self.begin(intended)
        else:
            self.backlog.append(intended)

    def begin(self, intended: float) -> None:
        self.in_flight += 1
        self.recorder.started_iteration((self.clock() - intended) * 1000.0)
        self.start(intended)

    def next_waiting(self) -> float | None:
        """An iteration finished: the next arrival it should run (its intended time), if one waits.

        The finished iteration's slot passes to it, so `in_flight` stays; None frees the slot.
        """
        now = self.clock()
        self.expire(now)
        if self.backlog and not self.stopped:
            intended = self.backlog.popleft()
            self.recorder.started_iteration((now - intended) * 1000.0)
            return intended
        self.in_flight -= 1
        return None

    def expire(self, now: float) -> None:
        """Drop the arrivals that have waited longer than the allowed lateness."""
        while self.backlog and now - self.backlog[0] > self.max_lateness_s:
            self.recorder.dropped_iteration((now - self.backlog.popleft()) * 1000.0)

    def stop(self) -> None:
        """No more arrivals; those still waiting are dropped at their lateness now, and so are those
        already due that the loop never reached (it fell behind): every arrival due by now is started
        or dropped, none goes unaccounted. (Called while `run` sleeps: the loop is cooperative.)"""
        self.stopped = True
        now = self.clock()
        while self.backlog:
            self.recorder.dropped_iteration((now - self.backlog.popleft()) * 1000.0)
        if self.t0 is None or self.done:
            return
        for offset in self.times:
            if self.t0 + offset > now:
                break
            self.recorder.dropped_iteration((now - self.t0 - offset) * 1000.0)
