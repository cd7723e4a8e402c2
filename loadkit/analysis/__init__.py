"""Analysis: a canary judged from its runs. The orchestration between the engines and scoring.

It asks what a set of checks needs before any traffic (`require`, `baseline_target`), runs the load
(`run_scored`; `compare_scored` for canary vs baseline at once), gathers what Prometheus and the
baseline saw (`gather`) and scores it all into the one result model (`build_result`). `score_now`
and `compare_now` judge from Prometheus alone, as Flagger does at each tick; `tally_of` turns a
window of a run into the counts the decisive-breach rule tests.

    cli/, webhook/, chaos/  ->  analysis/  ->  load/ (Locust), prometheus/  ->  scoring/  ->  models/

Scoring stays pure; the engines know nothing of thresholds. Nothing here imports locust.
"""

from loadkit.analysis._now import compare_now, for_prometheus_only, score_now
from loadkit.analysis._result import INTERRUPTED_NOTE, as_planned_end, assess_generator, build_result, timeline_point
from loadkit.analysis._scored import compare_scored, run_scored
from loadkit.analysis._server_side import (
    DEFAULT_INTERVAL_S,
    ServerSide,
    baseline_target,
    client_compares,
    gather,
    prometheus_checks,
    require,
    side_of,
)
from loadkit.analysis._tally import tally_of

__all__ = ["DEFAULT_INTERVAL_S", "INTERRUPTED_NOTE", "ServerSide", "as_planned_end", "assess_generator",
           "baseline_target", "build_result", "client_compares", "compare_now", "compare_scored",
           "for_prometheus_only", "gather", "prometheus_checks", "require", "run_scored", "score_now", "side_of",
           "tally_of", "timeline_point"]
