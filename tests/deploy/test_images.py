"""What each image holds, made here without a Docker engine: the build stage's own COPY, ENV
and RUN instructions, read from the Dockerfile and run in a scratch folder standing for the
container's root, then the final stage's CMD and HEALTHCHECK against what it installed.

It proves that the service's wheels and the shared ones are complete (templates and
migrations included), that the service starts from them alone in an environment that sees
nothing of the repository, and that the Helm chart's migration Job program works with them.
What it cannot prove is the base image or the final stage's RUN (user, pip removal): those
need a Docker engine (test_compose_journey.py) and are checked as text in test_dockerfiles.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy

from postsale_local.kafka import local_kafka
from postsale_local.processes import free_port, stop_process, tail
from postsale_local.suite import generate_secrets
from tests.deploy.conftest import LINT_VALUES, ROOT, SERVICES, rendered
from tests.deploy.dockerfile import Instruction, environment, stages

pytestmark = pytest.mark.integration

# The container paths the Dockerfiles use, each moved under the scratch root.
CONTAINER_PATHS = re.compile(r"(?<![\w./-])/(src|wheels|opt/postsale)(?=[/\s:]|$)")


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory):
    """A broker of this module's own, even where KAFKA_BOOTSTRAP_SERVERS names one: a service
    started here joins its real consumer groups, and on a shared broker it would take
    partitions from the suite the e2e tests run."""
    cluster = local_kafka(tmp_path_factory.mktemp("image-kafka"))
    cluster.start()
    try:
        yield cluster.bootstrap_servers
    finally:
        cluster.stop()


def _in_root(text: str, root: Path) -> str:
    return CONTAINER_PATHS.sub(lambda m: f"{root}/{m.group(1)}", text)


def _shims(folder: Path) -> Path:
    """`python` and `pip` on PATH, as the base image has them: this interpreter's."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "python").symlink_to(sys.executable)
    pip = folder / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@"\n')
    pip.chmod(0o755)
    return folder


def run_build_stage(service: str, root: Path) -> Path:
    """COPY, ENV, WORKDIR and RUN of the build stage, in order; returns the environment's folder."""
    build, _ = stages(ROOT / "services" / service / "Dockerfile")
    env = {**os.environ, **{k: _in_root(v, root) for k, v in environment(build.instructions).items()}}
    # The machine's pip cache instead of none: the image downloads every wheel, a test need not.
    env.pop("PIP_NO_CACHE_DIR")
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{_shims(root / 'shims')}{os.pathsep}{env['PATH']}"
    workdir = root
    for instruction in build.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = Path(_in_root(instruction.arguments, root))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            source, destination = instruction.words()
            _copy(ROOT / source, workdir / destination, into_folder=destination.endswith("/"))
        elif instruction.keyword == "RUN":
            result = subprocess.run(["/bin/sh", "-c", _in_root(instruction.arguments, root)], cwd=workdir, env=env,
                                    capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
            assert result.returncode == 0, f"RUN {instruction.arguments}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return root / "opt" / "postsale"


def _copy(source: Path, destination: Path, *, into_folder: bool) -> None:
    target = destination / source.name if into_folder and source.is_file() else destination
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _final_stage(service: str) -> tuple[dict[str, str], list[str], list[str]]:
    _, final = stages(ROOT / "services" / service / "Dockerfile")
    [cmd] = final.all("CMD")
    [healthcheck] = final.all("HEALTHCHECK")
    check = Instruction("CMD", healthcheck.arguments.split(" CMD ", 1)[1])
    return environment(final.instructions), cmd.words(), check.words()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Each service's environment as its build stage makes it: wheels of every dependency (from
    pip's cache), about 45 s of pip per service on two cores, so two at a time."""
    roots = {service: tmp_path_factory.mktemp(f"image-{service}") for service in SERVICES}
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = {service: pool.submit(run_build_stage, service, root) for service, root in roots.items()}
        return {service: future.result() for service, future in built.items()}


def _python(venv: Path, code: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", **(env or {})}, cwd=cwd,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("service", SERVICES)
def test_the_environment_holds_the_service_and_the_shared_packages_only(service, images):
    venv = images[service]
    check = _python(venv, "import importlib.util, sys\n"
                    "print(sys.prefix)\n"
                    f"for name in {list(SERVICES)!r} + ['contracts', 'runtime']:\n"
                    "    print(name, importlib.util.find_spec(f'postsale.{name}') is not None)\n"
                    "print('pip', importlib.util.find_spec('pip') is not None)")
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[0] == str(venv)
    found = dict(line.split() for line in lines[1:])
    assert found == {**{s: str(s == service) for s in SERVICES}, "contracts": "True", "runtime": "True",
                     "pip": "False"}


@pytest.mark.parametrize("service", SERVICES)
def test_the_command_starts_the_service_and_the_healthcheck_passes(service, images, own_kafka, tmp_path):
    venv = images[service]
    image_env, cmd, healthcheck = _final_stage(service)
    port = free_port()
    cmd = [part.replace("8000", str(port)) for part in cmd]
    healthcheck = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in healthcheck]
    env = {
        **{k: _in_root(v, venv.parents[1]).replace("$PATH", "/usr/bin:/bin") for k, v in image_env.items()},
        **generate_secrets(),
        "KAFKA_BOOTSTRAP_SERVERS": own_kafka,
        f"{service.upper()}_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
    }
    # Only what the container would have: no variables of this process, no repository on the path.
    process = subprocess.Popen([str(venv / "bin" / cmd[0]), *cmd[1:]], cwd=tmp_path, env=env,
                               stdout=open(tmp_path / "service.log", "ab"), stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"{service} exited:\n{tail(tmp_path / 'service.log')}"
            check = subprocess.run(healthcheck, env=env, capture_output=True, text=True, cwd=tmp_path)
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, f"HEALTHCHECK never passed:\n{tail(tmp_path / 'service.log')}"
            time.sleep(0.5)
        assert healthcheck[0] == "python" and env["PATH"].startswith(str(venv / "bin"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as ready:
            assert ready.status == 200
    finally:
        stop_process(process)


@pytest.mark.parametrize("service", SERVICES)
def test_the_chart_migration_job_migrates_with_the_image(service, images, helm, postgres):
    """The Job's program, as the chart renders it, run twice in the image's environment on an
    empty PostgreSQL database: the first run makes the tables, the second finds nothing to do."""
    [job] = [d for d in rendered(helm, LINT_VALUES)
             if d["kind"] == "Job" and d["metadata"]["name"] == f"postsale-{service}-migrations"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"]
    url = postgres.create_database(f"{service}_image_{os.getpid()}_{int(time.time())}")
    for _ in range(2):
        result = _python(images[service], container["command"][2], env={f"{service.upper()}_DATABASE_URL": url})
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{service}: database at the newest revision" in result.stdout
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            revisions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
            tables = set(sqlalchemy.inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert len(revisions) == 1
    assert {"alembic_version", "outbox", "inbox"} < tables, tables
