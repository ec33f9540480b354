"""pipeline.model.registry: one version, one role; promotion and rollback recorded, in a real SQLite registry
(versions created directly: the roles do not depend on what the versions hold)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import InputError
from pipeline.model import registry


def versions(client: MlflowClient, name: str, count: int) -> list[str]:
    client.create_registered_model(name)
    return [str(client.create_model_version(name, source=f"file:///model/{i}").version) for i in range(count)]


def roles(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_the_first_version_becomes_champion_and_later_ones_wait_as_challenger(client, request):
    name = request.node.name
    first, second, third = versions(client, name, 3)

    assert registry.place_new_version(client, name, first) == "champion"
    assert registry.place_new_version(client, name, second) == "challenger"
    assert registry.place_new_version(client, name, second) == "challenger"  # a rerun keeps the role
    assert registry.place_new_version(client, name, third) == "challenger"  # the newest waits

    assert roles(client, name) == {"champion": first, "challenger": third}
    assert registry.role_of(client, name, second) is None


def test_promoting_the_challenger_takes_its_challenger_alias_and_records_both_versions(client, request):
    name = request.node.name
    first, second = versions(client, name, 2)
    registry.place_new_version(client, name, first)
    registry.place_new_version(client, name, second)

    assert registry.promote(client, name, second, reason="test") == first

    assert roles(client, name) == {"champion": second}  # one version, one role
    assert client.get_model_version(name, second).tags["replaced_champion"] == first
    assert "demoted_at" in client.get_model_version(name, first).tags
    assert registry.champion_history(client, name) == [first, second]


def test_rollback_gives_the_alias_back_and_refuses_when_there_is_no_previous_champion(client, request):
    name = request.node.name
    first, second = versions(client, name, 2)
    registry.place_new_version(client, name, first)
    with pytest.raises(InputError, match="no previous champion"):
        registry.rollback(client, name)
    registry.promote(client, name, second, reason="test")

    assert registry.rollback(client, name) == (second, first)

    assert roles(client, name) == {"champion": first}
    assert registry.champion_history(client, name) == [first]


def test_promoting_a_version_that_does_not_exist_names_the_flag(client, request):
    name = request.node.name
    versions(client, name, 1)
    with pytest.raises(InputError, match=r"--model-version: .* has no version 9"):
        registry.promote(client, name, "9", reason="test")
