"""The folders of files that must be refused (tests/invalid_spaces, invalid_studies, invalid_datasets).

Each file starts with ``# expect: <substring of the message>`` and optionally ``# key: <key path>``, so a file
says itself what refusing it must look like.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import InputError

TESTS = Path(__file__).resolve().parent


def invalid_files(folder: str) -> list[Path]:
    return sorted((TESTS / folder).glob("*.yaml"))


def expectations(path: Path) -> tuple[str, str | None]:
    """The ``# expect:`` substring and optional ``# key:`` path declared at the top of an invalid file."""
    lines = path.read_text().splitlines()
    match = re.fullmatch(r"# expect: (.+)", lines[0])
    assert match, f"{path.name} must start with '# expect: <substring>'"
    key = re.fullmatch(r"# key: (.+)", lines[1]) if len(lines) > 1 else None
    return match.group(1), key.group(1) if key else None


def assert_refused_as_declared(load: Callable[[Path], object], path: Path) -> InputError:
    """``load(path)`` raises an exit-2 InputError on one line, naming the file, the declared key and message."""
    expected, key = expectations(path)

    with pytest.raises(InputError) as caught:
        load(path)

    error = caught.value
    message = str(error)
    assert error.exit_code == 2
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert expected in message
    if key is not None:
        assert error.key == key
        assert f"{path}: {key}: " in message
    return error
