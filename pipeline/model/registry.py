"""The model registry's roles: one champion, at most one challenger, promotion and rollback, each recorded.

A version holds one role: promoting the challenger takes its challenger alias away. The champion's
history lives in the registered model's ``champion_history`` tag (versions, oldest first), so
``rollback`` knows the previous champion even after several promotions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.errors import InputError
from pipeline.tracking import Client, models

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"


@dataclass(frozen=True)
class Registration:
    """A registered version and the role it holds now."""

    name: str
    version: str
    alias: str
    model_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def champion_version(client: Client, name: str) -> str | None:
    return models.version_by_alias(client, name, CHAMPION)


def role_of(client: Client, name: str, version: str) -> str | None:
    """``champion``, ``challenger`` or None: the alias ``version`` holds now."""
    for alias in (CHAMPION, CHALLENGER):
        if models.version_by_alias(client, name, alias) == version:
            return alias
    return None


def place_new_version(client: Client, name: str, version: str) -> str:
    """The first version of a model becomes champion; a later one waits as challenger until a gate or a
    person promotes it. Returns the alias given. Idempotent: a version that already holds a role keeps it."""
    if (role := role_of(client, name, version)) is not None:
        return role
    if champion_version(client, name) is None:
        promote(client, name, version, reason="first version of the model")
        return CHAMPION
    models.set_alias(client, name, CHALLENGER, version)
    return CHALLENGER


def champion_history(client: Client, name: str) -> list[str]:
    return [v for v in models.model_tags(client, name).get(HISTORY_TAG, "").split(",") if v]


def promote(client: Client, name: str, version: str, reason: str) -> str | None:
    """Make ``version`` the champion; returns the version it replaced. Recorded on both versions; the
    challenger alias leaves ``version`` if it held it."""
    _require_version(client, name, version)
    previous = champion_version(client, name)
    models.set_alias(client, name, CHAMPION, version)
    if models.version_by_alias(client, name, CHALLENGER) == version:
        models.delete_alias(client, name, CHALLENGER)
    history = [v for v in champion_history(client, name) if v != version] + [version]
    models.set_model_tag(client, name, HISTORY_TAG, ",".join(history))
    models.set_version_tags(client, name, version, {"promoted_at": _now(), "promotion_reason": reason})
    if previous is not None and previous != version:
        models.set_version_tags(client, name, version, {"replaced_champion": previous})
        models.set_version_tags(client, name, previous, {"demoted_at": _now()})
    return previous


def rollback(client: Client, name: str) -> tuple[str, str]:
    """Give the champion alias back to the previous champion; returns (from, to) versions."""
    current = champion_version(client, name)
    history = champion_history(client, name)
    if current is None or len(history) < 2 or history[-1] != current:
        raise InputError(None, "--model-name", f"{name} has no previous champion to roll back to",
                         "promote a version explicitly with `python -m pipeline promote`")  # fmt: skip
    previous = history[-2]
    models.set_alias(client, name, CHAMPION, previous)
    if models.version_by_alias(client, name, CHALLENGER) == previous:
        models.delete_alias(client, name, CHALLENGER)
    models.set_model_tag(client, name, HISTORY_TAG, ",".join(history[:-1]))
    models.set_version_tags(client, name, current, {"rolled_back_at": _now()})
    models.set_version_tags(client, name, previous, {"restored_by_rollback_at": _now()})
    return current, previous


def _require_version(client: Client, name: str, version: str) -> None:
    if not models.version_exists(client, name, version):
        raise InputError(None, "--model-version", f"{name} has no version {version}", "see its versions in the UI")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
