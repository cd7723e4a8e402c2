"""A Chaos Toolkit control that puts loadkit's load under a plain `chaos run`.

    controls:
      - name: loadkit-load
        provider:
          type: python
          module: loadkit.chaos.control
          arguments: {target: "http://bruno-site-canary.bruno:80", profile: steady}

The load starts before the steady-state hypothesis and stops after the rollbacks; its totals
are added to the journal's `extensions`. Under `loadkit chaos run` the load is loadkit's own,
and this control steps aside.
"""

from __future__ import annotations

from typing import Any

from chaoslib.types import Configuration, Experiment, Journal

from loadkit.chaos import live
from loadkit.chaos.live import LoadSession

_owned: LoadSession | None = None


def before_experiment_control(context: Experiment, target: str | None = None, profile: str = "steady",
                              users: int | None = None, config: str | None = None, rate: float | None = None,
                              configuration: Configuration = None, **_arguments: Any) -> None:
    global _owned
    if live.current() is not None:
        return  # loadkit chaos run already drives the load
    from pathlib import Path

    from loadkit.config import load_config

    loaded = load_config(Path(config) if config else None)
    url = target or (configuration or {}).get("loadkit_target")
    if not url:
        raise ValueError("loadkit control: give `target` (or configuration loadkit_target)")
    plan = live.hold_plan(loaded, profile, str(url), users, float(rate) if rate is not None else None)
    session = LoadSession(plan, loaded.thresholds, loaded.min_samples)
    session.start()
    live.set_current(session)
    _owned = session


def after_experiment_control(context: Experiment, state: Journal, **_arguments: Any) -> None:
    global _owned
    session, _owned = _owned, None
    if session is None:
        return
    try:
        state.setdefault("extensions", []).append({"name": "loadkit", **live.summary(session)})
    finally:
        session.stop()
        live.set_current(None)
