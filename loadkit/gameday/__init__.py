"""Game days: a plan of chaos scenarios under one baseline load, stop conditions, a resilience score.

The room sits above chaos/ (each scenario is one `chaos run`) and below report/ and cli/.
"""

from loadkit.gameday.models import GameDayResult, GameDayVerdict, ScenarioResult, ScenarioStatus, StopFiring, StopKind
from loadkit.gameday.plan import Category, Expect, Plan, PlanSpec, load_plan

__all__ = ["Category", "Expect", "GameDayResult", "GameDayVerdict", "Plan", "PlanSpec", "ScenarioResult",
           "ScenarioStatus", "StopFiring", "StopKind", "load_plan"]
