"""What every boundary model shares: strict input models, closed result models, one schema version.

Results carry `schema_version`; add fields, never rename them, so stored results keep loading.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class StrictModel(BaseModel):
    """Input models: unknown keys are errors that name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ResultModel(BaseModel):
    """Output models: closed too (a stored result with an unknown key is refused, not half-read)."""

    model_config = ConfigDict(extra="forbid")
