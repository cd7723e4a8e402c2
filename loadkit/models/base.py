"""What every boundary model shares: strict input models, closed result models, one schema version.

Results carry `schema_version`; add fields, never rename them, so stored results keep loading.
Results written as JSON round every float the same way (`JSON_DECIMALS`): what the JSON, the store,
the webhook and the HTML report show agree, and no 99.14529914529915 reaches a reader.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

SCHEMA_VERSION = 1
JSON_DECIMALS = 3  # ms to the µs, percentages to a thousandth of a point
SIGNIFICANT = {"p_value": 4}  # probabilities can be tiny: significant digits, not decimals


class StrictModel(BaseModel):
    """Input models: unknown keys are errors that name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


class ResultModel(BaseModel):
    """Output models: closed too (a stored result with an unknown key is refused, not half-read).

        >>> class R(ResultModel):
        ...     rate: float
        >>> R(rate=2 / 3).model_dump_json()
        '{"rate":0.667}'
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    @model_serializer(mode="wrap")
    def _rounded(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        return _round(data) if info.mode_is_json() else data


def _round(value: Any, significant: int | None = None) -> Any:
    """Idempotent, so a model nested in another (already rounded by its own serializer) comes out the same."""
    if isinstance(value, float):
        if significant is not None and value and math.isfinite(value):
            return round(value, significant - 1 - math.floor(math.log10(abs(value))))
        return round(value, JSON_DECIMALS)
    if isinstance(value, dict):
        rounded = {k: _round(v, SIGNIFICANT.get(k) if isinstance(k, str) else None) for k, v in value.items()}
        observed = value.get("observed")
        if isinstance(observed, float) and rounded["observed"] != observed and \
                rounded["observed"] in (value.get("min"), value.get("max")):
            rounded["observed"] = observed  # 500.0004 against max 500 must not read as 500: keep what was seen
        return rounded
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value
