"""A search-space file, validated against its model families, and the typing of the values a trial gets.

Bounds are written in natural units (a learning rate as 0.01..0.3, not as exponents). A quantized
distribution with an integer step (``q: 1``) and ``randint`` yield Python ints: hyperopt hands back floats
for them, which the estimators and MLflow would then record as ``6.0``.

A trial's parameters are one flat mapping: ``model`` (the family) plus the parameters active in the chosen
branch; a conditional option's own parameters appear only when that option is chosen.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import config
from pipeline.config import (
    GRID_TOLERANCE,
    MODEL_KEY,
    Choice,
    ConditionalOption,
    Grid,
    LogNormal,
    LogUniform,
    Normal,
    Parameter,
    PChoice,
    QLogNormal,
    QNormal,
    RandInt,
    Scalar,
    SpaceConfig,
    option_value,
)
from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.families import Family


@dataclass(frozen=True)
class SearchSpace:
    file: Path
    config: SpaceConfig
    sha256: str
    """Hash of the file's bytes: tagged on every run so a user can tell which version produced it."""

    @property
    def branches(self) -> dict[str, dict[str, Parameter]]:
        return self.config.branches

    @property
    def families(self) -> list[str]:
        return list(self.branches)

    def fixed(self, family: str) -> dict[str, Scalar]:
        """The family's top-level fixed values."""
        return {k: v for k, v in self.branches[family].items() if isinstance(v, Scalar)}

    def typed(self, values: dict[str, Any]) -> dict[str, Scalar]:
        """The flat parameters a trial runs with, from what hyperopt sampled (see ``optimizer.compile_space``)."""
        family = values[MODEL_KEY]
        return {MODEL_KEY: family, **_typed(self.branches[family], values)}

    def describe(self) -> str:
        lines = []
        for family, params in self.branches.items():
            lines.append(f"model: {family}")
            width = max((len(".".join(path)) for path, _ in walk(params)), default=0)
            for path, parameter in walk(params):
                lines.append(f"  {'.'.join(path):<{width}}  {render(parameter)}")
        return "\n".join(lines)


def walk(params: dict[str, Parameter], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Parameter]]:
    """Every parameter with its path; a conditional option's parameters under ``name=value``."""
    for name, parameter in params.items():
        yield (*prefix, name), parameter
        if isinstance(parameter, Choice):
            for option in parameter.options:
                if isinstance(option, ConditionalOption):
                    yield from walk(option.parameters, (*prefix, f"{name}={option.value}"))


def _typed(params: dict[str, Parameter], values: dict[str, Any]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for name, parameter in params.items():
        value = values[name]
        if isinstance(parameter, Choice) and parameter.conditional:
            option = chosen_option(parameter, value[name])
            out[name] = option_value(option)
            if isinstance(option, ConditionalOption):
                out |= _typed(option.parameters, value)
        elif isinstance(parameter, Scalar):
            out[name] = parameter
        else:
            out[name] = cast(parameter, value)
    return out


def chosen_option(choice: Choice, value: Any) -> Scalar | ConditionalOption:
    return next(o for o in choice.options if _same(option_value(o), value))


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b)


def is_integer(dist: Any) -> bool:
    return isinstance(dist, RandInt) or isinstance(getattr(dist, "q", None), int)


def cast(dist: Any, value: Any) -> Scalar:
    if isinstance(dist, Choice | PChoice):
        return value
    number = float(value)
    if isinstance(dist, Grid):  # a draw on the very edge of its range may round one step beyond the grid
        first, last = dist.steps()
        number = min(max(number, first * dist.q), last * dist.q)
    if is_integer(dist):
        return round(number)
    return number


def middle(dist: Any) -> float:
    """A value from the middle of what a numeric distribution draws (before ``cast``): what the space's
    checks fit once, for the type and range every trial's draw will have."""
    if isinstance(dist, Grid):
        first, last = dist.steps()
        return (first + last) // 2 * dist.q
    if isinstance(dist, QNormal):
        return round(dist.mu / dist.q) * dist.q
    if isinstance(dist, QLogNormal):  # the step nearest the median, above zero as a log draw is
        return max(round(math.exp(dist.mu) / dist.q), 1) * dist.q
    if isinstance(dist, LogNormal):
        return math.exp(dist.mu)
    if isinstance(dist, Normal):
        return dist.mu
    if isinstance(dist, RandInt):
        return (dist.low + dist.high) // 2
    if isinstance(dist, LogUniform):
        return math.sqrt(dist.low * dist.high)
    return (dist.low + dist.high) / 2


def render(parameter: Parameter) -> str:
    if isinstance(parameter, Scalar):
        return f"fixed {parameter!r}"
    if isinstance(parameter, Choice):
        return f"choice({[option_value(o) for o in parameter.options]}) -> one of the options"
    fields = parameter.model_dump(exclude={"distribution"})
    body = ", ".join(f"{k}={v}" for k, v in fields.items())
    kind = "int" if is_integer(parameter) else "one of the options" if isinstance(parameter, PChoice) else "float"
    return f"{parameter.distribution}({body}) -> {kind}"


def load(path: Path) -> SearchSpace:
    """Validate a space file: its schema, then each name and fixed value against its model family."""
    return checked(config.load_space(path), path, hashlib.sha256(path.read_bytes()).hexdigest())


def from_mapping(raw: dict[str, Any] | SpaceConfig, name: str = "space (in memory)") -> SearchSpace:
    """A space given in Python (a dict as the YAML file would read, or the pydantic model), validated as a file is.

    Its hash is the canonical JSON of the validated model, so the same space hashes alike however it is written.
    """
    parsed = config.validate_mapping(SpaceConfig, raw, name)
    return checked(parsed, Path(name), hashlib.sha256(parsed.model_dump_json().encode()).hexdigest())


def checked(parsed: SpaceConfig, path: Path, sha256: str) -> SearchSpace:
    """Each name, fixed value and choice option of a parsed space checked against its model family (with the
    estimator's own checks: see ``Family.check_fixed``); ``path`` names it in errors."""
    from pipeline import families  # importing the estimators costs a second that --help should not pay

    for family, params in parsed.branches.items():
        key = f"models.{family}.parameters" if parsed.models is not None else "parameters"
        _check_no_shadowing(params, path, key)
        adapter = families.get(family)
        accepted = adapter.accepted_parameters()
        for path_parts, parameter, context in _walk_with_context(params):
            name = path_parts[-1]
            where = f"{key}.{'.'.join(path_parts)}"
            if name == MODEL_KEY or name not in accepted:
                close = difflib.get_close_matches(name, sorted(accepted), n=3)
                fix = f"did you mean {', '.join(close)}?" if close else f"allowed: {', '.join(sorted(accepted))}"
                raise InputError(path, where, f"not a {family} hyperparameter", fix)
            if isinstance(parameter, Scalar) and (problem := adapter.check_fixed(name, parameter, context)):
                raise InputError(path, where, problem, "fix the value or sample it with a distribution")
            if isinstance(parameter, Choice | PChoice):
                _check_options(adapter, name, parameter, context, path, where)
            elif not isinstance(parameter, Scalar):
                drawn = cast(parameter, middle(parameter))
                if problem := adapter.check_fixed(name, drawn, context):
                    fix = "draw values it takes: an integer step (q: 1) draws whole numbers"
                    raise InputError(path, where, f"draws values such as {drawn!r}; {problem}", fix)
        if not any(not isinstance(p, Scalar) for _, p in walk(params)) and len(parsed.branches) == 1:
            raise InputError(path, key, "declares nothing to search", "give at least one a distribution")
    return SearchSpace(file=path, config=parsed, sha256=sha256)


def _check_options(
    adapter: Family, name: str, choice: Choice | PChoice, context: dict[str, Scalar], path: Path, where: str
) -> None:
    """Each option of a choice is a value some trials will run with: refuse the file for an option the
    estimator refuses, as for a fixed value, rather than fail those trials one by one."""
    for i, option in enumerate(choice.options):
        if problem := adapter.check_fixed(name, option_value(option), context):
            raise InputError(path, f"{where}.options.{i}", f"option {problem}", "fix the option or remove it")


def _walk_with_context(
    params: dict[str, Parameter], prefix: tuple[str, ...] = (), context: dict[str, Scalar] | None = None
) -> Iterator[tuple[tuple[str, ...], Parameter, dict[str, Scalar]]]:
    """Like ``walk``, with the option values that make each parameter active (``{"booster": "dart"}``)."""
    context = context or {}
    for name, parameter in params.items():
        yield (*prefix, name), parameter, context
        if isinstance(parameter, Choice):
            for option in parameter.options:
                if isinstance(option, ConditionalOption):
                    inner = context | {name: option.value}
                    yield from _walk_with_context(option.parameters, (*prefix, f"{name}={option.value}"), inner)


def _check_no_shadowing(params: dict[str, Parameter], path: Path, key: str) -> None:
    """A name active twice in one trial (at a level and inside an option, or in two choices' options)
    would be flattened into one value: refuse it."""
    seen = set(params)
    for name, parameter in params.items():
        if not (isinstance(parameter, Choice) and parameter.conditional):
            continue
        inside: set[str] = set()
        for option in parameter.options:
            if isinstance(option, ConditionalOption):
                where = f"{key}.{name}={option.value}"
                _check_no_shadowing(option.parameters, path, where)
                names = {p[-1] for p, _ in walk(option.parameters)}
                if clash := sorted(names & seen):
                    raise InputError(
                        path,
                        f"{where}.{clash[0]}",
                        "is also declared where it is active at the same time",
                        "give it one place: at this level or inside the options",
                    )
                inside |= names
        seen |= inside


def point_from_logged(space: SearchSpace, logged: Mapping[str, str]) -> dict[str, Scalar] | None:
    """Typed trial parameters from a trial's MLflow params (strings), or None when the space cannot
    produce them (see ``express``)."""
    return express(space, logged)[0]


def express(space: SearchSpace, logged: Mapping[str, str]) -> tuple[dict[str, Scalar] | None, str]:
    """A trial's MLflow params (strings) read against ``space``: its typed parameters, or None and why the
    space cannot produce them.

    A trial is expressible when its family is in the space, each parameter of that family's active branch
    accepts the trial's value (``accepts``: inside the bounds, on the q grid, among a choice's options,
    equal to a fixed value), and it had no parameter the space lacks: a value the space no longer sets
    would make the trial's model one that no trial of the space trains. Parameters the family adds to
    train on a device (``Family.placed``) are not the space's and are not counted.
    """
    from pipeline import families  # the estimators' import, paid only by callers that read logged trials

    family = logged.get(MODEL_KEY, space.families[0] if len(space.families) == 1 else None)
    if family not in space.branches:
        return None, f"its model {family} is not in the space"
    used = {MODEL_KEY} | set(families.get(family).placed({}, "cuda"))
    values = _express(space.branches[family], logged, used)
    if isinstance(values, str):
        return None, values
    if extra := sorted(set(logged) - used):
        return None, f"{extra[0]}={logged[extra[0]]} is no longer in the space"
    return {MODEL_KEY: family, **values}, ""


def _express(params: dict[str, Parameter], logged: Mapping[str, str], used: set[str]) -> dict[str, Scalar] | str:
    """The branch's typed values (``used`` gets the names read), or why one is not expressible."""
    out: dict[str, Scalar] = {}
    for name, parameter in params.items():
        text = logged.get(name)
        if text is None:
            return f"it has no value for {name}"
        used.add(name)
        value, problem = accepts(parameter, text)
        if problem:
            return f"{name}={text} {problem}"
        assert value is not None, "accepts gives a value or a problem"
        out[name] = value
        if isinstance(parameter, Choice):
            option = chosen_option(parameter, value)
            if isinstance(option, ConditionalOption):
                nested = _express(option.parameters, logged, used)
                if isinstance(nested, str):
                    return nested
                out |= nested
    return out


"""How far (in steps) a logged value may sit from its q grid: what its decimal text loses (``0.30000000000000004``)."""


def accepts(parameter: Parameter, text: str) -> tuple[Scalar | None, str]:
    """The typed value ``parameter`` gives a trial for the logged ``text``, or None and why it cannot give it.

    A fixed value must be the same; a choice's options are compared as text (as MLflow logged them); a
    number must lie within ``low..high`` (``randint``: an integer, ``high`` included) and, for a quantized
    distribution, on its grid (a multiple of ``q``; see ``config.Grid``); a log distribution's values are
    positive. Normal distributions have no bounds.
    """
    if isinstance(parameter, Scalar):
        same = text == str(parameter) or (_number(text) == parameter and not isinstance(parameter, bool | str))
        return (parameter, "") if same else (None, f"but the space fixes it at {parameter!r}")
    if isinstance(parameter, Choice | PChoice):
        option = next((o for o in parameter.options if str(option_value(o)) == text), None)
        if option is None:
            return None, f"is not among the options {[option_value(o) for o in parameter.options]}"
        return option_value(option), ""
    number = _number(text)
    if number is None:
        return None, "is not a number"
    kind = parameter.distribution
    if kind in ("lognormal", "loguniform", "qloguniform") and number <= 0:
        return None, "is not positive"
    if kind == "qlognormal" and number < 0:
        return None, "is negative"
    if isinstance(parameter, RandInt):
        if number != round(number) or not parameter.low <= number <= parameter.high:
            return None, f"is not an integer in {parameter.low}..{parameter.high}"
    elif (q := getattr(parameter, "q", None)) is not None:
        steps = number / q
        if abs(steps - round(steps)) > GRID_TOLERANCE * max(1.0, abs(steps)):
            return None, f"is not on the grid of step {q}"
        if isinstance(parameter, Grid) and not parameter.steps()[0] <= round(steps) <= parameter.steps()[1]:
            return None, f"is outside {parameter.low}..{parameter.high}"
    else:
        low, high = getattr(parameter, "low", None), getattr(parameter, "high", None)
        if low is not None and high is not None and not low <= number <= high:
            return None, f"is outside {low}..{high}"
    return cast(parameter, number), ""


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
