"""Pure scoring: observations + thresholds -> checks -> score -> verdict. No I/O, no clock."""

from loadkit.scoring._compare import Side, judge, proportion_p_value
from loadkit.scoring._evaluate import (
    Scorecard,
    client_thresholds,
    evaluate,
    evaluate_threshold,
    fmt,
    metric_label,
    range_text,
    with_unit,
)
from loadkit.scoring._observe import UNITS, Observation, observations_from_stats

__all__ = ["UNITS", "Observation", "Scorecard", "Side", "client_thresholds", "evaluate", "evaluate_threshold", "fmt",
           "judge", "metric_label", "observations_from_stats", "proportion_p_value", "range_text", "with_unit"]
