"""Pure scoring: observations + thresholds -> checks -> score -> verdict. No I/O, no clock."""

from loadkit.scoring._compare import ProportionTest, Side, judge, proportion_test
from loadkit.scoring._decisive import (
    Breach,
    DecisiveTracker,
    LatencyBound,
    Tally,
    decisive_breaches,
    latency_bounds,
    look_confidences,
    proportion_bounds,
)
from loadkit.scoring._evaluate import Scorecard, client_thresholds, evaluate, evaluate_threshold, metric_label
from loadkit.scoring._failfast import DEFAULT_HOLD_S, FailFast, Stop, abortable, can_abort
from loadkit.scoring._observe import UNITS, Observation, observations_from_stats
from loadkit.scoring._resilience import Scored, category_scores, resilience_score, scenario_score

__all__ = [
    "DEFAULT_HOLD_S",
    "UNITS",
    "Breach",
    "DecisiveTracker",
    "FailFast",
    "LatencyBound",
    "Observation",
    "ProportionTest",
    "Scorecard",
    "Scored",
    "Side",
    "Stop",
    "Tally",
    "abortable",
    "can_abort",
    "category_scores",
    "client_thresholds",
    "decisive_breaches",
    "evaluate",
    "evaluate_threshold",
    "judge",
    "latency_bounds",
    "look_confidences",
    "metric_label",
    "observations_from_stats",
    "proportion_bounds",
    "proportion_test",
    "resilience_score",
    "scenario_score",
]
