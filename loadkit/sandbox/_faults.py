"""Fault injection that tests can count on.

A random 10% error rate makes every assertion statistical. The sandbox is the ground truth for
loadkit's own tests, so its faults are deterministic instead: an `ErrorInjector` with rate F fails
exactly floor(i * F) of its first i calls, spread as evenly as possible (an accumulator, like
Bresenham's line algorithm). With round-robin routing over pods that each hold one injector, a
run of requests sees the configured rate to within one error per pod.

Router-level faults (Istio's `fault.delay` / `fault.abort`) belong here too when they are added.
"""

from __future__ import annotations

# Floating-point sums of e.g. 0.1 drift just below 1.0 (ten times 0.1 is 0.9999999999999999).
_EPSILON = 1e-9


class ErrorInjector:
    """Decides, call by call, whether to fail so that exactly floor(i * rate) of i calls fail.

    >>> injector = ErrorInjector(0.25)
    >>> [injector.should_fail() for _ in range(8)]
    [False, False, False, True, False, False, False, True]
    """

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self._accumulated = 0.0

    def should_fail(self) -> bool:
        self._accumulated += self.rate
        if self._accumulated >= 1.0 - _EPSILON:
            self._accumulated -= 1.0
            return True
        return False
