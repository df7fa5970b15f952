"""Schemathesis (pinned, PyPI) against each running service's admin API and pages, as its
OpenAPI document describes them: valid and invalid requests, none may get a 5xx.

On the suite the end-to-end tests use (real Kafka and PostgreSQL, the admin token in every
request), bounded so that `make test` stays fast: at most MAX_EXAMPLES generated requests per
operation and phase, a fixed seed (set POSTSALE_SCHEMATHESIS_SEED to explore others), and a
hard time limit per service. It runs on a suite of its own (`scratch`): what it saves (generated
templates, a theme, store settings, webhook endpoints, follow-up rules) would change what the other
tests' customers are sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import SERVICES

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 25
TIME_LIMIT_SECONDS = 300
SEED = os.environ.get("POSTSALE_SCHEMATHESIS_SEED", "20261128")


@pytest.mark.parametrize("suite", ["scratch"], indirect=True)  # it saves generated templates, themes, settings
@pytest.mark.parametrize("service", SERVICES)
def test_no_request_gets_a_server_error(suite, service, tmp_path):
    schemathesis = Path(sys.executable).parent / "schemathesis"
    assert schemathesis.exists(), "schemathesis is missing: install the dev requirements (`make install`)"
    args = [
        schemathesis, "run", f"{suite.url(service)}/openapi.json",
        "--checks", "not_a_server_error",
        # Examples from the schema, its boundaries, then generated requests; the stateful phase
        # (chains through links) is left out: the documents declare no links.
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED,
        "--workers", "1",
        "--request-timeout", "10",
        # A page's redirect is its answer; following it would test the next page instead.
        "--max-redirects", "0",
        "--header", f"Authorization: Bearer {suite.admin_token(service)}",
        "--generation-database", "none",
        "--no-color",
        "--report", "junit", "--report-dir", tmp_path,
    ]
    try:
        result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=tmp_path,
                                timeout=TIME_LIMIT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis on {service} ran over {TIME_LIMIT_SECONDS}s:\n{(exc.stdout or b'')[-4000:]!r}")
    output = result.stdout + result.stderr
    # Printed in the test's output (pytest -rP) and kept on failure: what was generated and found.
    print(output[-6000:])
    assert result.returncode == 0, f"schemathesis found server errors in {service} (its log: " \
                                   f"{suite.log_path(service)}):\n{output[-8000:]}"
