"""Pure scoring: observations + thresholds -> checks -> score -> verdict. No I/O, no clock."""

from loadkit.scoring._evaluate import Scorecard, evaluate, evaluate_threshold, fmt, range_text, with_unit
from loadkit.scoring._observe import Observation, observations_from_stats

__all__ = ["Observation", "Scorecard", "evaluate", "evaluate_threshold", "fmt", "observations_from_stats",
           "range_text", "with_unit"]
