"""pipeline.search.resume: what an unfinished study may resume with."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError
from pipeline.search.resume import RESUME_KEYS, check_resumable

SAVED = {key: f"{key}-then" for key in RESUME_KEYS} | {"parent_run_id": "p1"}


def test_the_same_identity_resumes():
    check_resumable(SAVED, {key: SAVED[key] for key in RESUME_KEYS}, "s")


@pytest.mark.parametrize("key", list(RESUME_KEYS))
def test_anything_else_is_refused_saying_what_changed_and_how_to_go_on(key):
    now = {k: SAVED[k] for k in RESUME_KEYS} | {key: f"{key}-now"}

    with pytest.raises(InputError) as caught:
        check_resumable(SAVED, now, "s")

    assert str(caught.value) == (
        f"study 's' has an unfinished run (parent p1): {RESUME_KEYS[key]} changed since it started "
        f"({key}-then then, {key}-now now); rerun with --fresh to start a new study, or restore what changed "
        "to resume it"
    )
