"""What downstream systems rely on: generated files current, releases compatible, no secret in public."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest

from postsale.contracts import EVENT_TYPES, topics
from postsale.contracts.base import SECRET_MARK
from postsale.contracts.compatibility import breaking_changes

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"


def _load_generator():
    spec = importlib.util.spec_from_file_location("contracts_generate", CONTRACTS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generator()
RELEASES = sorted(p for p in (CONTRACTS / "released").iterdir() if p.is_dir())


def test_regenerating_schemas_examples_and_documents_changes_nothing():
    assert generate.stale_files() == [], "run `make generate` and commit the result"


def test_the_current_version_is_released():
    assert (CONTRACTS / "released" / generate.contracts_version()).is_dir()


@pytest.mark.parametrize("release", RELEASES, ids=lambda p: p.name)
def test_current_schemas_can_read_and_be_read_by_every_release_of_the_same_major(release):
    major = release.name.split(".")[0]
    assert generate.contracts_version().split(".")[0] == major, "a new major version means new topics"
    for old_path in (release / "schemas").rglob("*.json"):
        new_path = CONTRACTS / old_path.relative_to(release)
        assert new_path.exists(), f"{old_path.relative_to(release)} was removed"
        problems = breaking_changes(json.loads(old_path.read_text()), json.loads(new_path.read_text()))
        assert problems == [], f"breaking change against release {release.name}: {problems}"


@pytest.mark.parametrize("release", RELEASES, ids=lambda p: p.name)
def test_every_golden_example_of_every_release_still_parses(release):
    examples = list((release / "examples").rglob("*.json"))
    assert examples
    for path in examples:
        event_type = path.stem
        event = EVENT_TYPES[event_type].model_validate_json(path.read_text())
        assert event.topic == path.parent.name


def test_golden_examples_match_their_committed_schemas():
    for path in (CONTRACTS / "examples").rglob("*.json"):
        schema = json.loads((CONTRACTS / "schemas" / path.relative_to(CONTRACTS / "examples")).read_text())
        jsonschema.validate(json.loads(path.read_text()), schema)


def test_every_event_has_a_schema_and_an_example():
    for event_type, event in EVENT_TYPES.items():
        assert (CONTRACTS / "schemas" / event.topic / f"{event_type}.json").exists()
        assert (CONTRACTS / "examples" / event.topic / f"{event_type}.json").exists()


def test_secrets_travel_only_on_restricted_topics_that_one_service_reads():
    carrying_secrets = set()
    for event in EVENT_TYPES.values():
        secret_fields = [name for name, prop in event.model_json_schema()["properties"].items() if prop.get(SECRET_MARK)]
        if secret_fields:
            carrying_secrets.add(event.topic)
            assert topics.BY_NAME[event.topic].restricted, f"{event.__name__}.{secret_fields} on a public topic"
    restricted = {t.name for t in topics.ALL if t.restricted}
    assert carrying_secrets == restricted
    for name in restricted:
        assert len(topics.BY_NAME[name].subscribers) == 1


def test_topics_follow_the_naming_rule_and_events_name_their_topic():
    for topic in topics.ALL:
        owner, _stream, version = topic.name.split(".")
        assert owner == topic.publisher and version == "v1"
    assert {e.topic for e in EVENT_TYPES.values()} == {t.name for t in topics.ALL}
