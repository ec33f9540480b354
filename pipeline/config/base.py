"""What every configuration model shares: strict, frozen, finite; and how a validator names the key at fault."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)
from pydantic_core import PydanticCustomError

Scalar = bool | int | float | str


class _Strict(BaseModel):
    """Unknown keys are errors, loaded files are read-only, and every number is finite: ``.inf`` and ``.nan``
    are refused as a bound, a threshold or a fixed value alike (a NaN bound samples NaN in every trial).
    A field's docstring is its description: a missing required key is reported with it (``files``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True)


def at_key(key: str, problem: str) -> PydanticCustomError:
    """A problem a model validator finds at ``key`` below the model (``features.numeric.2``), reported with
    that path rather than the model's own."""
    return PydanticCustomError("at_key", "{problem}", {"key": key, "problem": problem})
