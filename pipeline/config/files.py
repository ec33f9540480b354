"""Reading the files a user edits: YAML read defensively, validated into the models, and the first problem
turned into one line naming the file, the key and the fix."""

from __future__ import annotations

import difflib
import errno
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from pipeline.config.base import _Strict
from pipeline.config.dataset import DatasetConfig
from pipeline.config.space import DISTRIBUTIONS, SpaceConfig
from pipeline.config.study import StudyConfig
from pipeline.errors import InputError

# --- loading -------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

MAX_FILE_BYTES = 1_000_000
"""The largest study, dataset or space file read (1 MB). The shipped files are a few KB; a file a person
edits is never near this, while a generated one far over it (a 5 MB choice) kept hyperopt building its
space with 3.9 GB of memory and never started a trial. Refused before it is parsed."""

MAX_NESTING = 50
"""The deepest nesting of mappings and lists. The deepest valid file, a space with choices inside
conditional options, needs about four levels per conditional level; PyYAML and the validation recurse per
level and exhaust Python's stack at a few hundred (a RecursionError instead of an error message)."""

MAX_VALUES = 100_000
"""The most values (mappings, lists and scalars) a file may hold once its YAML aliases are expanded. A few
lines of nested aliases expand to a billion values (the "billion laughs"), which validation would walk for
hours; a file a person writes holds a few hundred."""

_YAML_11_BOOLEANS = {"yes", "no", "on", "off"}
"""Words YAML 1.1 (and so PyYAML) reads as booleans besides true/false. ``equals: Yes`` meant the label
"Yes", not ``true``; YAML 1.2 and most other tools read them as text, so they are refused, not guessed."""

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: Path) -> Any:
    """The document of a YAML file, refusing (InputError) what is not a small UTF-8 YAML text a person wrote:
    a missing file, a directory, a symlink loop, binary or non-UTF-8 bytes, more than ``MAX_FILE_BYTES``,
    nesting deeper than ``MAX_NESTING``, aliases expanding past ``MAX_VALUES``, a key written twice in one
    mapping (YAML would keep the last silently), and a YAML 1.1 boolean word (``yes``, ``off``)."""
    text = _read_text(path)
    loader = _Loader(text, path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Inspection(path, loader).visit(node, (), 1)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(path, where, f"not valid YAML ({getattr(error, 'problem', error)})") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(
            path, None, "file not found", "check the path (relative paths start at the file naming it)"
        ) from None
    except IsADirectoryError:
        raise InputError(path, None, "is a directory", "give the path of a YAML file") from None
    except OSError as error:
        raise InputError(path, None, f"cannot be read ({_os_problem(error)})", "check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            path, None, f"is larger than {MAX_FILE_BYTES} bytes, the most a file here may hold", _NOT_GENERATED
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        raise InputError(path, None, f"not UTF-8 text (byte {byte:#04x} at line {line})", "save it as UTF-8") from None


_NOT_GENERATED = "check it is the file you meant (study, dataset and space files are small and written by hand)"


def _os_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "its symbolic links form a loop"
    return error.strerror or str(error)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than ``MAX_NESTING`` while it builds the node tree
    (PyYAML composes recursively: thousands of levels end in a RecursionError)."""

    def __init__(self, text: str, path: Path):
        super().__init__(text)
        self._path, self._depth = path, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise InputError(
                    self._path, f"line {line}", f"nested more than {MAX_NESTING} levels deep", _NOT_GENERATED
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Inspection:
    """One walk over a file's node tree, before any value is built: duplicate keys, YAML 1.1 boolean words,
    and the size and depth once aliases are expanded (a node reached twice through aliases is checked once,
    its expanded size counted each time)."""

    def __init__(self, path: Path, loader: _Loader):
        self.path, self.loader = path, loader
        self.sizes: dict[int, int | None] = {}
        """Expanded size per node id; None while the node is being visited (an alias back to it is a cycle)."""

    def visit(self, node: yaml.Node, keys: tuple[str, ...], depth: int) -> int:
        if depth > MAX_NESTING:
            self.refuse(keys, f"nested more than {MAX_NESTING} levels deep once its aliases are expanded")
        if id(node) in self.sizes:
            size = self.sizes[id(node)]
            if size is None:
                self.refuse(keys, "refers to itself through an alias", "point the alias at another anchor")
            return size
        self.sizes[id(node)] = None
        size = 1 + sum(self.visit(child, child_keys, depth + 1) for child_keys, child in self.children(node, keys))
        if size > MAX_VALUES:
            self.refuse((), f"holds more than {MAX_VALUES} values once its aliases are expanded")
        self.sizes[id(node)] = size
        return size

    def children(self, node: yaml.Node, keys: tuple[str, ...]) -> list[tuple[tuple[str, ...], yaml.Node]]:
        if isinstance(node, yaml.ScalarNode):
            self.check_scalar(node, keys)
            return []
        if isinstance(node, yaml.SequenceNode):
            return [((*keys, str(i)), item) for i, item in enumerate(node.value)]
        first: dict[Any, int] = {}
        children = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                children.append((keys, value_node))
                continue
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    self.refuse(
                        (*keys, str(key)),
                        f"duplicate key {key!r} (first at line {first[key]}, again at line {line})",
                        "keep one; YAML would silently use the last",
                    )
                first[key] = line
            except TypeError:  # a mapping or list as a key: PyYAML refuses it when it builds the value
                pass
            children.append(((*keys, str(key)), value_node))
        return children

    def check_scalar(self, node: yaml.ScalarNode, keys: tuple[str, ...]) -> None:
        if node.tag != _BOOL_TAG or node.style is not None or node.value.lower() not in _YAML_11_BOOLEANS:
            return
        meant = str(self.loader.construct_object(node)).lower()
        place = f"{keys[-1]}: " if keys and not keys[-1].isdigit() else ""
        self.refuse(
            keys,
            f"{node.value} is read by YAML 1.1 as the boolean {meant}",
            f"write {place}'{node.value}' for the text, or {meant} for a boolean",
        )

    def refuse(self, keys: tuple[str, ...], problem: str, fix: str = _NOT_GENERATED) -> NoReturn:
        raise InputError(self.path, ".".join(keys) or None, problem, fix)


def resolve_path(path: Path, file: str | Path | None = None, key: str | None = None) -> Path:
    """``path`` made absolute with its symbolic links followed. A loop of links is an InputError naming
    ``file`` and ``key`` where the path was written (``"command line", "--study"``), or the path itself,
    rather than the RuntimeError or OSError ``Path.resolve`` raises."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        if file is None:
            raise InputError(path, None, "its symbolic links form a loop", "point it at a file") from None
        raise InputError(file, key, f"{path}: its symbolic links form a loop", "point it at a file") from None


def load_model(model: type[M], path: Path, relative_paths: tuple[str, ...] = ()) -> M:
    """Validate a YAML file against ``model``; paths named in ``relative_paths`` resolve from the file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, None, "expected a mapping of keys at the top level", f"see the {model.__name__} fields")
    for key in relative_paths:
        if isinstance(raw.get(key), str):
            raw[key] = str(resolve_path(path.parent / raw[key], path, key))
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InputError(path, *first_problem(error, raw)) from None


def to_yaml(model: BaseModel) -> str:
    """A validated configuration as the YAML file that would give it (what a study given in memory logs)."""
    return yaml.safe_dump(model.model_dump(mode="json", exclude_none=True), sort_keys=False)


def validate_mapping(model: type[M], raw: Any, name: str) -> M:
    """``raw`` (a dict as the YAML file would read, or already a ``model``) validated as a file is; errors
    name it ``name`` (``study config (in memory)``) in place of a file."""
    if isinstance(raw, model):
        raw = raw.model_dump()
    if not isinstance(raw, dict):
        raise InputError(name, None, f"expected a mapping or a {model.__name__}", f"see the {model.__name__} fields")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InputError(name, *first_problem(error, raw)) from None


def first_problem(error: ValidationError, raw: Any = None) -> tuple[str, str]:
    """The one problem worth reporting, with the key path as the user wrote it in ``raw``.

    pydantic reports a problem once per union member; a misspelled key shows up both as "unknown key"
    and as "field required", so the most specific problem is chosen, and the path is cleaned of the
    union's internal names (``tagged-union[...]``, the tag value such as ``quniform``).
    """
    detail = min(error.errors(), key=_specificity)
    path = ".".join(_user_path(detail["loc"], raw))
    kind, message, ctx = detail["type"], detail["msg"].removeprefix("Value error, "), detail.get("ctx", {})
    if kind == "at_key":
        return ".".join(p for p in (path, ctx["key"]) if p), message
    if kind == "finite_number":
        return path, f"{message}; .inf and .nan are not allowed here"
    if kind.startswith("union_tag"):
        key = ctx["discriminator"].strip("'")
        allowed = ", ".join(_TAGS.get(key, ()))
        if kind == "union_tag_invalid":
            return path, f"unknown {key} {ctx['tag']!r}; allowed: {allowed}"
        return path, f"missing '{key}'; write one of: {allowed}"
    if kind == "extra_forbidden":
        keys = _allowed_keys(_model_named(error.title), detail["loc"][:-1])
        close = difflib.get_close_matches(str(detail["loc"][-1]), keys, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}? " if close else ""
        return path, f"unknown key; {hint}allowed here: {', '.join(keys)}" if keys else "unknown key"
    if kind == "missing":
        leaf = str(detail["loc"][-1])
        return path, f"missing; add '{leaf}:' ({_what_it_takes(_model_named(error.title), detail['loc'])})"
    if detail.get("input", ...) is None:
        if path.startswith("parameters."):
            return path, "no value given; write a fixed value or a mapping with 'distribution'"
        return path, f"no value given ({message})"
    return path, message


_SCALAR_MEMBERS = {"bool", "int", "float", "str"}
_UNION_MEMBERS = _SCALAR_MEMBERS | {"ConditionalOption"}
_TAGS = {"distribution": DISTRIBUTIONS, "by": ("partition", "column", "random", "kfold")}


def _specificity(detail: Any) -> int:
    if detail["type"].startswith("union_tag"):
        return 0
    if detail["type"] in ("extra_forbidden", "finite_number"):
        return 1
    # Errors of the fixed-value alternatives (``bool``, ``int``...) matter only if no mapping was written.
    return 3 if _SCALAR_MEMBERS & {str(p) for p in detail["loc"]} else 2


def _model_named(name: str) -> type[BaseModel] | None:
    """The model class pydantic names in an error's title (``StudyConfig``)."""
    pending: list[type[BaseModel]] = [_Strict]
    while pending:
        model = pending.pop()
        if model.__name__ == name:
            return model
        pending += model.__subclasses__()
    return None


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys the mapping at pydantic location ``loc`` under ``model`` may hold, in declaration order.

    The location is followed through the types: a field to its annotation, a dict to its values, a list to
    its items, a union to its members (narrowed by a member name or a tag value such as ``quniform``).
    """
    candidates: list[Any] = [model] if model is not None else []
    for part in loc:
        candidates = _step(candidates, part)
    return list(dict.fromkeys(key for m in candidates if _is_model(m) for key in m.model_fields))


_KINDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false", Path: "a file path"}


def _what_it_takes(model: type[BaseModel] | None, loc: tuple) -> str:
    """What the key at pydantic location ``loc`` under ``model`` holds: the first sentence of its field's
    docstring, else its kind of value (a number, a list, one of ...)."""
    parents: list[Any] = [model] if model is not None else []
    for part in loc[:-1]:
        parents = _step(parents, part)
    fields = [m.model_fields[loc[-1]] for m in parents if _is_model(m) and loc[-1] in m.model_fields]
    if fields and fields[0].description:
        text = " ".join(fields[0].description.replace("``", "").split())
        first = re.split(r"(?<=[^.])[.:](?:\s|$)", text, maxsplit=1)[0]
        return first[:1].lower() + first[1:]  # it follows "add 'key:' ("
    kinds = []
    for member in _members(fields[0].annotation) if fields else []:
        if get_origin(member) is Literal:
            kinds.append("one of " + ", ".join(str(value) for value in get_args(member)))
        elif _is_model(member) or get_origin(member) is dict:
            kinds.append("a mapping")
        elif get_origin(member) is list:
            kinds.append("a list")
        else:
            kinds.append(_KINDS.get(member, "a value"))
    kinds = list(dict.fromkeys(kinds))
    return " or ".join(kinds) if 0 < len(kinds) <= 2 else "a value"


def _step(candidates: list[Any], part: str | int) -> list[Any]:
    if isinstance(part, str) and "[" in part:  # pydantic's name of a union or validator, not a key
        return candidates
    models = [t for t in candidates if _is_model(t)]
    if named := [t for t in candidates if getattr(t, "__name__", None) == part]:
        return named
    if tagged := [m for m in models if _tagged(m, part)]:
        return tagged
    out: list[Any] = []
    for t in candidates:
        if t in models and part in t.model_fields:
            out += _members(t.model_fields[part].annotation)
        elif get_origin(t) is dict:
            out += _members(get_args(t)[1])
        elif get_origin(t) is list and isinstance(part, int):
            out += _members(get_args(t)[0])
    return out


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _tagged(model: type[BaseModel], part: str | int) -> bool:
    """Whether ``part`` is the model's tag value in a discriminated union (``quniform``, ``random``)."""
    return any(part in get_args(model.model_fields[key].annotation) for key in _TAGS if key in model.model_fields)


def _members(annotation: Any) -> list[Any]:
    """The concrete types of an annotation: ``Annotated`` unwrapped, a union split into its members."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _user_path(loc: tuple, raw: Any) -> list[str]:
    """Drop the parts of a pydantic location that are not keys the user wrote.

    A discriminated union puts its tag value right after the key holding it (``split.column.tset`` for a
    ``by: column`` split), and a union of types puts its member's name (``tagged-union[...]``, ``int``), unless
    the user wrote that name as a key (an unknown key ``int`` is named as such).
    """
    parts: list[str] = []
    node, entered = raw, True
    for part in loc:
        written = isinstance(node, dict) and part in node
        if isinstance(part, str) and ("[" in part or part in _UNION_MEMBERS) and not written:
            continue
        if entered and isinstance(node, dict) and part in (node.get("distribution"), node.get("by")):
            entered = False
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
        entered = True
    return parts


def load_study(path: Path) -> StudyConfig:
    return load_model(StudyConfig, path, relative_paths=("dataset", "space"))


def load_dataset(path: Path) -> DatasetConfig:
    return load_model(DatasetConfig, path, relative_paths=("path",))


def load_space(path: Path) -> SpaceConfig:
    return load_model(SpaceConfig, path)
