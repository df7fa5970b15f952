"""Each service's HTTP API against its releases: `oasdiff breaking` (pinned; Go module proxy)
between the OpenAPI document frozen in docs/openapi/released/<contracts version>/ and the one
the code serves now. A breaking change to a documented path (a path or method removed without
deprecation, a response field dropped, a request field made required, ...) fails.

Both documents have their `#/components/schemas` references inlined first: what is compared is
what travels, so renaming a model (FastAPI names a component after its class) is not a break,
while any change to the shape behind the name still is."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES, run

pytestmark = pytest.mark.integration

RELEASED = ROOT / "docs" / "openapi" / "released"


def _generator():
    spec = importlib.util.spec_from_file_location("contracts_generate", ROOT / "contracts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generator()


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.name.split("."))


CURRENT = generate.contracts_version()
# Every release of the current major version, as the event schemas are checked.
RELEASES = sorted((p for p in RELEASED.iterdir() if p.is_dir() and p.name.split(".")[0] == CURRENT.split(".")[0]),
                  key=_version) if RELEASED.is_dir() else []


def inline_schemas(document: dict) -> dict:
    """The document with every `#/components/schemas/...` reference replaced by the schema (a
    recursive reference is left as it is)."""
    schemas = document.get("components", {}).get("schemas", {})

    def walk(node, seen: tuple[str, ...]):
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name in seen:
                return node
            siblings = {key: walk(value, seen) for key, value in node.items() if key != "$ref"}
            return {**walk(copy.deepcopy(schemas[name]), seen + (name,)), **siblings}
        return {key: walk(value, seen) for key, value in node.items()}

    inlined = {key: value for key, value in document.items() if key != "components"}
    inlined["paths"] = walk(document.get("paths", {}), ())
    recursive = {name: schema for name, schema in schemas.items() if f'"#/components/schemas/{name}"' in json.dumps(inlined)}
    if recursive:
        inlined["components"] = {"schemas": recursive}
    return inlined


def breaking(oasdiff: Path, base: dict, revision: dict, folder: Path) -> tuple[int, str]:
    (folder / "base.json").write_text(json.dumps(inline_schemas(base)))
    (folder / "revision.json").write_text(json.dumps(inline_schemas(revision)))
    result = run([oasdiff, "breaking", folder / "base.json", folder / "revision.json", "--fail-on", "ERR",
                  "--format", "text"])
    return result.returncode, result.stdout + result.stderr


def test_the_current_contracts_version_has_its_http_apis_frozen():
    for service in SERVICES:
        assert (RELEASED / CURRENT / f"{service}.json").exists(), "run `make generate` and commit the result"


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("release", RELEASES, ids=lambda p: p.name)
def test_no_breaking_change_to_a_released_path(release, service, oasdiff, tmp_path):
    released = json.loads((release / f"{service}.json").read_text())
    code, report = breaking(oasdiff, released, generate.openapi_document(service), tmp_path)
    assert code == 0, f"{service}'s HTTP API breaks release {release.name} (keep the old shape, or deprecate " \
                      f"the path first):\n{report}"


def test_oasdiff_would_catch_a_break(oasdiff, tmp_path):
    """Not vacuous: a path removed without deprecation is reported as an error."""
    document = json.loads((RELEASES[-1] / "entitlements.json").read_text())
    broken = inline_schemas(document)
    removed_path = next(iter(broken["paths"]))
    del broken["paths"][removed_path]
    code, report = breaking(oasdiff, document, broken, tmp_path)
    assert code == 1 and "api-path-removed-without-deprecation" in report and removed_path in report, report
