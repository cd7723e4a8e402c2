"""Typed boundaries, one module per thing they hold.

- `loadkit.models.specs`: what users write: thresholds, compare settings, the metrics they name;
- `loadkit.models.results`: what loadkit reports: RunResult, ScoreResult, Check, Comparison;
- `loadkit.models.wire`: the Locust plugin's stream as the loadkit process reads it: Stats, Snapshot;
- `loadkit.models.base`: the two model bases and the schema version every stored result carries.

Import from the module that holds a name; this package re-exports nothing, so a reader of the
import line knows which kind of model it is.
"""
