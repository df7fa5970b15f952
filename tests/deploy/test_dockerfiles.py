"""The services' Dockerfiles, checked without a Docker engine: hadolint, and what issue 12 asks
of them (multi-stage, slim Python 3.11, the service's own package and the shared ones only,
no build tools in the final image, a non-root user, a HEALTHCHECK, the uvicorn factory)."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import ROOT, SERVICES, run
from tests.deploy.dockerfile import stages

pytestmark = pytest.mark.integration

DOCKERFILES = {service: ROOT / "services" / service / "Dockerfile" for service in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_finds_nothing(service, hadolint):
    # The strictest threshold: style findings fail too.
    result = run([hadolint, "--failure-threshold", "style", "--no-color", DOCKERFILES[service]])
    assert result.returncode == 0, f"hadolint on services/{service}/Dockerfile:\n{result.stdout}{result.stderr}"


def test_the_four_dockerfiles_differ_only_in_the_service_name():
    reference = DOCKERFILES["checkout"].read_text()
    for service in SERVICES[1:]:
        assert DOCKERFILES[service].read_text() == reference.replace("checkout", service), (
            f"services/{service}/Dockerfile drifted from checkout's; keep them the same but for the name")


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_is_built_from_its_own_package_and_the_shared_ones_only(service):
    build, final = stages(DOCKERFILES[service])
    assert build.base == final.base == "python:3.11-slim"
    assert build.name == "build" and final.name is None
    copied = [i.words()[0] for i in build.all("COPY")]
    allowed = ("constraints.txt", "contracts/", "libs/", f"services/{service}/")
    assert all(source.startswith(allowed) for source in copied), copied
    assert not any(source.startswith(f"services/{other}") for other in SERVICES if other != service
                   for source in copied)
    [wheels] = build.all("RUN")
    assert f"pip wheel --wheel-dir /wheels ./contracts ./libs ./services/{service}" in wheels.arguments
    assert "PIP_CONSTRAINT=/src/constraints.txt" in " ".join(i.arguments for i in build.all("ENV"))


@pytest.mark.parametrize("service", SERVICES)
def test_the_final_stage_runs_the_factory_as_a_user_without_build_tools(service):
    _, final = stages(DOCKERFILES[service])
    # Only the virtual environment crosses from the build stage: no wheels, no sources.
    assert [i.arguments for i in final.all("COPY")] == ["--from=build /opt/postsale /opt/postsale"]
    [setup] = final.all("RUN")
    assert "pip uninstall --yes --quiet pip setuptools wheel" in setup.arguments
    assert "apt-get" not in setup.arguments and "gcc" not in setup.arguments
    assert "install --directory --owner postsale --group postsale" in setup.arguments
    assert [i.arguments for i in final.all("WORKDIR")] == ["/var/lib/postsale"], "the one folder it may write"
    [user] = final.all("USER")
    uid = user.arguments.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user, which runAsNonRoot can check"
    [healthcheck] = final.all("HEALTHCHECK")
    assert "http://127.0.0.1:8000/healthz" in healthcheck.arguments
    [cmd] = final.all("CMD")
    assert cmd.words() == ["uvicorn", "--factory", f"postsale.{service}.entrypoints.app:create_app",
                           "--host", "0.0.0.0", "--port", "8000"]


def test_the_build_context_leaves_out_what_no_image_needs():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for entry in (".venv/", ".data/", ".cache/", ".tools/", "**/.git", "tests/", "services/*/tests/", "docs/"):
        assert entry in ignored, entry
    # ...but keeps what the Dockerfiles copy.
    for needed in ("constraints.txt", "contracts/", "libs/", "services/"):
        assert needed not in ignored
