"""A search-space file, validated against its model family, and the typing of the values a trial gets.

Bounds are written in natural units (a learning rate as 0.01..0.3, not as exponents). A quantized
distribution with an integer step (``q: 1``) and ``randint`` yield Python ints: hyperopt hands back floats
for them, which xgboost and MLflow would then record as ``6.0``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import config
from pipeline.config import Choice, PChoice, RandInt, Scalar, SpaceConfig
from pipeline.errors import InputError

ACCEPTED_PARAMETERS: dict[str, frozenset[str]] = {}
"""Per model family, the hyperparameter names its estimator accepts (filled lazily: importing xgboost
costs a second that ``--help`` should not pay)."""


@dataclass(frozen=True)
class SearchSpace:
    file: Path
    config: SpaceConfig
    sha256: str
    """Hash of the file's bytes: tagged on every run so a user can tell which version produced it."""

    @property
    def searched(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.parameters.items() if not isinstance(v, Scalar)}

    @property
    def fixed(self) -> dict[str, Scalar]:
        return {k: v for k, v in self.config.parameters.items() if isinstance(v, Scalar)}

    def typed(self, values: dict[str, Any]) -> dict[str, Scalar]:
        """The parameters a trial runs with: sampled values cast to their declared type, plus fixed ones."""
        out: dict[str, Scalar] = dict(self.fixed)
        for name, dist in self.searched.items():
            out[name] = cast(dist, values[name])
        return out

    def describe(self) -> str:
        width = max((len(k) for k in self.config.parameters), default=0)
        lines = [f"model: {self.config.model}"]
        for name, dist in self.config.parameters.items():
            lines.append(f"  {name:<{width}}  {render(dist)}")
        return "\n".join(lines)


def is_integer(dist: Any) -> bool:
    return isinstance(dist, RandInt) or isinstance(getattr(dist, "q", None), int)


def cast(dist: Any, value: Any) -> Scalar:
    if isinstance(dist, Choice | PChoice):
        return value
    if is_integer(dist):
        return round(float(value))
    return float(value)


def render(dist: Any) -> str:
    if isinstance(dist, Scalar):
        return f"fixed {dist!r}"
    fields = dist.model_dump(exclude={"distribution"})
    body = ", ".join(f"{k}={v}" for k, v in fields.items())
    kind = "int" if is_integer(dist) else "one of the options" if isinstance(dist, Choice | PChoice) else "float"
    return f"{dist.distribution}({body}) -> {kind}"


def load(path: Path) -> SearchSpace:
    """Validate a space file: its schema, then each name against what the model family accepts."""
    parsed = config.load_space(path)
    accepted = accepted_parameters(parsed.model)
    for name in parsed.parameters:
        if name not in accepted:
            import difflib

            close = difflib.get_close_matches(name, sorted(accepted), n=3)
            fix = f"did you mean {', '.join(close)}?" if close else f"allowed: {', '.join(sorted(accepted))}"
            raise InputError(path, f"parameters.{name}", f"not a {parsed.model} hyperparameter", fix)
    if not parsed.parameters or all(isinstance(v, Scalar) for v in parsed.parameters.values()):
        raise InputError(path, "parameters", "declares nothing to search", "give at least one a distribution")
    return SearchSpace(file=path, config=parsed, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def accepted_parameters(model: str) -> frozenset[str]:
    if model not in ACCEPTED_PARAMETERS:
        from pipeline import booster

        ACCEPTED_PARAMETERS["xgboost"] = booster.ACCEPTED_PARAMETERS
    return ACCEPTED_PARAMETERS[model]
