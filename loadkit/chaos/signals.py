"""How a chaos run answers signals, and what stops it early without one.

Signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2: every one that would otherwise kill
the process with the fault on; chaoslib's own meaning of SIGUSR2, "skip the rollbacks", is
overridden: rollbacks always run):
- until the rollbacks start, a signal interrupts the experiment at once, in the middle of a probe,
  an action or a pause (chaoslib then rolls back);
- during the rollbacks (chaoslib's, or the ones loadkit plays for it) it is deferred; the third
  signal of the run abandons the rollback that hangs and every one after it (loadkit still
  removes its own faults);
- during loadkit's clean-up it is deferred (the clean-up always runs; only a wait to see killed
  pods back ends early), and it ends the cool-down and the steady state "after" at once.

Without a signal, the supervisor stops the experiment (as a signal would, and the run is an
error, not a verdict) when the load stops, when a fault has been in place for longer than
--max-fault-duration, or when a fault reaches its own expiry (`Supervisor`); rollbacks that then
hang past a grace are abandoned too. It reaches the main thread, where chaoslib runs, with SIGALRM.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import chaoslib.activity

from loadkit.chaos.gate import Phase

ABANDON_AFTER = 3  # signals (counted over the run) before hung rollbacks are abandoned
ROLLBACK_GRACE_S = 30.0  # how long rollbacks may take once the fault watchdog fired
EXPERIMENT = frozenset({Phase.SETUP, Phase.HYPOTHESIS, Phase.METHOD})
USER_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1",
                                                        "SIGUSR2") if hasattr(signal, name))


class RunControl:
    """The signal policy of a chaos run, phase by phase (see the module docstring)."""

    def __init__(self, on_phase: Callable[[Phase], None] = lambda _phase: None) -> None:
        self.received: list[str] = []
        self.phase = Phase.SETUP
        self.stop_reason: str | None = None  # loadkit stopped the experiment itself (watchdog, load)
        self.abandoned = False  # the rollbacks were abandoned: loadkit plays none of them
        self._on_phase = on_phase
        self._saved: dict[int, Any] = {}
        self._pending: tuple[str, str] | None = None  # (stop|abandon, reason) from the supervisor
        self._main = threading.main_thread().ident

    # -- phases

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        self._on_phase(phase)

    @property
    def stopping(self) -> bool:
        return bool(self.received) or self.stop_reason is not None

    # -- handlers

    def install(self) -> None:
        for sig in (*USER_SIGNALS, signal.SIGALRM):
            self._saved[sig] = signal.signal(sig, self.handle)

    def reinstall(self) -> None:
        """chaoslib sets its own SIGTERM/SIGUSR1/SIGUSR2 handlers when it starts: put ours back."""
        for sig in (*USER_SIGNALS, signal.SIGALRM):
            signal.signal(sig, self.handle)

    def restore(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved.clear()

    def alarm(self, kind: str, reason: str) -> None:
        """From another thread: stop the experiment ("stop") or abandon the rollbacks ("abandon")."""
        self._pending = (kind, reason)
        if self._main is not None:
            signal.pthread_kill(self._main, signal.SIGALRM)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGALRM:
            self._alarmed()
            return
        name = signal.Signals(signum).name
        self.received.append(name)
        phase = self.phase
        if phase in EXPERIMENT or phase is Phase.AFTER:
            # KeyboardInterrupt, not chaoslib's InterruptExecution: a Python probe or action would
            # swallow the latter (as ActivityFailed) and the experiment would carry on.
            raise KeyboardInterrupt
        if phase is Phase.ROLLBACKS and len(self.received) >= ABANDON_AFTER:
            self.abandoned = True
            _say(f"loadkit: {name} x{len(self.received)}: abandoning the rollbacks (loadkit still removes its own "
                 "faults)")
            raise KeyboardInterrupt
        what = "the rollbacks and clean-up" if phase in (Phase.ROLLBACKS, Phase.CLEANUP) else "the clean-up"
        _say(f"loadkit: {name}: finishing {what} first")

    def _alarmed(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        kind, reason = pending
        if kind == "halt":  # a game day's stop condition: stop at once, whatever the phase allows
            self.stop_reason = self.stop_reason or reason
            if self.phase in EXPERIMENT or self.phase is Phase.AFTER:
                _say(f"loadkit: stop condition: {reason}: rolling back now")
                raise KeyboardInterrupt
            return  # rollbacks and clean-up finish; the cool-down and the steady state after are skipped
        if kind == "stop" and self.phase in EXPERIMENT:
            self.stop_reason = reason
            _say(f"loadkit: {reason}: stopping the experiment and rolling back now")
            raise KeyboardInterrupt
        if kind == "abandon" and self.phase is Phase.ROLLBACKS:
            self.abandoned = True
            self.stop_reason = self.stop_reason or reason
            _say(f"loadkit: {reason}: abandoning the rollbacks (loadkit still removes its own faults)")
            raise KeyboardInterrupt


class HaltSwitch:
    """Lets another thread halt whichever chaos run is current (a game day's stop conditions): the
    run stops as the supervisor stops it (rollbacks play, loadkit's clean-up runs), also in its
    cool-down. A halt before a run attaches halts it as it starts; a signal received between runs
    (`interrupt`) interrupts the next run as it attaches, before anything is injected."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.signals: list[str] = []  # the signals the runs it was attached to received
        self.pending: list[str] = []  # signals received while no run was attached
        self._control: RunControl | None = None
        self._lock = threading.Lock()

    def attach(self, control: RunControl) -> None:
        """In the main thread, inside the run's experiment block: raises KeyboardInterrupt (the run's
        own "interrupted" path: clean-up, nothing injected) when a signal came before the run."""
        with self._lock:
            self._control = control
            reason = self.reason
            pending = [s for s in self.pending if s not in control.received]
        if pending:
            control.received.extend(pending)
            _say(f"loadkit: {', '.join(pending)} received before the experiment: nothing is injected")
            raise KeyboardInterrupt
        if reason is not None:
            control.alarm("halt", reason)

    def interrupt(self, name: str) -> None:
        """A signal received outside any run (between scenarios, while one is prepared)."""
        with self._lock:
            self.pending.append(name)

    def detach(self) -> None:
        with self._lock:
            if self._control is not None:
                self.signals += self._control.received
            self._control = None

    def halt(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            control = self._control
        if control is not None:
            control.alarm("halt", reason)


class InterruptiblePauses:
    """chaoslib pauses with `time.sleep` inside a `finally:`, so a signal that lands while an action
    runs would still wait out that action's pause (with the fault on). While the experiment runs,
    a pause after a signal (or an early stop) ends at once; during the rollbacks it is skipped."""

    def __init__(self, control: RunControl) -> None:
        self.control = control
        self.original = chaoslib.activity.time
        chaoslib.activity.time = self  # type: ignore[assignment]

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + float(seconds)
        while not self.control.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        if self.control.stopping and self.control.phase in EXPERIMENT:
            raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)

    def restore(self) -> None:
        chaoslib.activity.time = self.original  # type: ignore[assignment]


class Supervisor:
    """A thread that stops the experiment when the load stops or a fault outlives --max-fault-duration."""

    def __init__(self, control: RunControl, first_attempt: Callable[[], float | None],
                 load_running: Callable[[], bool], max_fault_s: float, grace_s: float = ROLLBACK_GRACE_S,
                 expiry: Callable[[], float | None] = lambda: None) -> None:
        self.control = control
        self.expiry = expiry
        self.first_attempt = first_attempt
        self.load_running = load_running
        self.max_fault_s = max_fault_s
        self.grace_s = grace_s
        self.fired_at: float | None = None  # the fault watchdog fired
        self._abandoned = False
        self._load_reported = False
        self._expiry_reported = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadkit-chaos-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            alarm = self.check(time.time())
            if alarm is not None:
                self.control.alarm(*alarm)

    def check(self, now: float) -> tuple[str, str] | None:
        phase = self.control.phase
        if phase in EXPERIMENT and not self._load_reported and not self.load_running():
            self._load_reported = True
            return "stop", "the load stopped (Locust exited) while the experiment ran"
        expiry = self.expiry()
        if phase in EXPERIMENT and not self._expiry_reported and expiry is not None and now >= expiry:
            self._expiry_reported = True
            return "stop", ("a fault of this run reached its own expiry (ttl_s / expires_in) while the experiment "
                            "still ran: the sandbox, the reaper or another run removes it then, so the rest would not "
                            "test it (give the fault a longer expiry than the pauses after it)")
        attempt = self.first_attempt()
        if attempt is None:
            return None
        if self.fired_at is None and now - attempt > self.max_fault_s and phase in (*EXPERIMENT, Phase.ROLLBACKS):
            self.fired_at = now
            if phase in EXPERIMENT:
                return "stop", f"the fault has been in place for {now - attempt:.1f}s, over --max-fault-duration " \
                               f"({self.max_fault_s:g}s)"
        if self.fired_at is not None and not self._abandoned and phase is Phase.ROLLBACKS \
                and now - self.fired_at > self.grace_s:
            self._abandoned = True
            return "abandon", f"the rollbacks still run {self.grace_s:g}s after --max-fault-duration passed"
        return None


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # SIGHUP: the terminal may be gone
        print(text, file=sys.stderr, flush=True)
