"""The model registry's aliases: who is champion, who was before, promotion and rollback, each recorded.

The champion's history lives in the registered model's ``champion_history`` tag (versions, oldest
first), so ``rollback`` knows the previous champion even after several promotions.
"""

from __future__ import annotations

import time

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import InputError

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"


def champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def promote(client: MlflowClient, name: str, version: str, reason: str) -> str | None:
    """Make ``version`` the champion; returns the version it replaced. Recorded on both versions."""
    _require_version(client, name, version)
    previous = champion_version(client, name)
    client.set_registered_model_alias(name, CHAMPION, version)
    history = [v for v in champion_history(client, name) if v != version] + [version]
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(name, version, "promoted_at", _now())
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, version, "replaced_champion", previous)
        client.set_model_version_tag(name, previous, "demoted_at", _now())
    return previous


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Give the champion alias back to the previous champion; returns (from, to) versions."""
    current = champion_version(client, name)
    history = champion_history(client, name)
    if current is None or len(history) < 2 or history[-1] != current:
        raise InputError(None, "--model-name", f"{name} has no previous champion to roll back to",
                         "promote a version explicitly with `python -m pipeline promote`")  # fmt: skip
    previous = history[-2]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[:-1]))
    client.set_model_version_tag(name, current, "rolled_back_at", _now())
    client.set_model_version_tag(name, previous, "restored_by_rollback_at", _now())
    return current, previous


def _require_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise InputError(None, "--version", f"{name} has no version {version}", "see its versions in the UI") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
