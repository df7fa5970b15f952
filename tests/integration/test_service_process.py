"""A service as it runs in production: `uvicorn --factory` in a process of its own, configured by
the environment alone. Every line it writes is a JSON object (uvicorn's own lines included,
which were plain text on standard error), /metrics exposes the request, outbox, consumer and
dunning metrics, and its spans reach the OTLP endpoint it is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from postsale_local.processes import free_port, stop_process
from tests.otlp import OtlpReceiver

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "process-test-admin-token"


def test_a_service_process_writes_only_json_lines_exposes_metrics_and_exports_spans(kafka_bootstrap, tmp_path):
    port, prefix = free_port(), f"proc{uuid.uuid4().hex[:8]}"
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with OtlpReceiver() as receiver, open(stdout, "wb") as out, open(stderr, "wb") as err:
        env = {**os.environ,
               "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
               "POSTSALE_KAFKA_PREFIX": prefix,  # its consumer groups stay apart from the suite's checkout
               "CHECKOUT_DATABASE_URL": f"sqlite:///{tmp_path / 'checkout.db'}",
               "CHECKOUT_ADMIN_TOKEN": ADMIN_TOKEN,
               "CHECKOUT_SECRET_KEY": "process-test-secret-key-0123456789",
               "POSTSALE_METRICS_INTERVAL_SECONDS": "1",
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
               "OTEL_BSP_SCHEDULE_DELAY": "200",
               "PYTHONWARNINGS": "always"}
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "postsale.checkout.entrypoints.app:create_app",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, f"checkout exited: {stdout.read_text()}{stderr.read_text()}"
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"checkout not ready: {stdout.read_text()[-3000:]}"
                time.sleep(0.3)
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            trace_id = uuid.uuid4().hex
            missing = httpx.get(f"{base}/admin/offers/off_missing", headers={
                **admin, "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
            assert missing.status_code == 404 and missing.headers["x-trace-id"] == trace_id
            assert httpx.post(f"{base}/admin/coupons", headers=admin, content=b"{not json").status_code == 422
            assert httpx.get(f"{base}/no/such/page").status_code == 404
            time.sleep(2)  # a round of the gauges (every second here), the dunning one included
            exposed = httpx.get(f"{base}/metrics", follow_redirects=True).text
            spans = receiver.wait_for(lambda received: any(s.trace_id == trace_id for s in received))
        finally:
            stop_process(process)  # SIGTERM: uvicorn's shutdown lines too

    assert process.returncode in (0, -15)  # uvicorn ends by raising the SIGTERM it handled again
    # Every line is a JSON object with the fields a log pipeline indexes.
    lines = [json.loads(line) for line in stdout.read_text().splitlines()]
    assert all({"time", "level", "service", "logger", "message"} <= line.keys() for line in lines)
    assert {line["service"] for line in lines} == {"checkout"}
    assert stderr.read_text() == ""  # uvicorn's lines went there, as plain text, before
    said = [(line["logger"], line["message"]) for line in lines]
    for message in ("Started server process", "Application startup complete.", "Shutting down",
                    "Application shutdown complete.", "Finished server process"):
        assert any(logger.startswith("uvicorn") and text.startswith(message) for logger, text in said), message
    assert not [text for _, text in said if "refreshing the gauges" in text]  # the dunning gauge's query works

    offers = 'method="GET",route="/admin/offers/{offer_id}",status="404"'
    for sample in (f"postsale_http_requests_total{{{offers}}} 1.0",
                   'postsale_http_requests_total{method="POST",route="/admin/coupons",status="422"} 1.0',
                   'postsale_http_requests_total{method="GET",route="unmatched",status="404"} 1.0',
                   f"postsale_http_request_duration_seconds_count{{{offers}}} 1.0",
                   "postsale_outbox_backlog 0.0", "postsale_outbox_oldest_unsent_age_seconds 0.0",
                   "postsale_outbox_parked_rows 0.0", "# TYPE postsale_consumer_lag gauge",
                   "# TYPE postsale_events_dead_lettered_total counter", "# TYPE postsale_subscriptions gauge"):
        assert sample in exposed, sample

    [request] = [s for s in spans if s.trace_id == trace_id and s.kind == "server"]
    assert (request.service, request.name) == ("postsale-checkout", "GET /admin/offers/{offer_id}")
    assert [s.name for s in spans if s.trace_id == trace_id and s.parent_span_id == request.span_id] == [
        "db transaction"]
