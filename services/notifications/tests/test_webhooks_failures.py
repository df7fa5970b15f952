"""Outgoing webhooks when things go wrong: answers the database will not keep, endpoints that
answer a byte at a time, names that resolve somewhere else a moment later, replays after an
endpoint was stopped, endpoints that recover, and the deliveries kept no longer than needed."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from postsale.notifications.adapters.tables import Email, TemplateOverride
from postsale.notifications.config import WebhookSettings
from postsale.notifications.webhooks import deliveries, endpoints, targets
from postsale.notifications.webhooks.sender import Sender
from postsale.notifications.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookSend
import test_webhooks
from test_webhooks import (
    SellerEndpoint, add_endpoint, attempts_of, deliveries_of, endpoint_row, publish, purchase, run_until, sender)

pytestmark = pytest.mark.unit
engine, clock, environment = test_webhooks.engine, test_webhooks.clock, test_webhooks.environment  # the fixtures


def open_sends(engine, delivery_id: str) -> list[WebhookSend]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookSend).where(WebhookSend.delivery_id == delivery_id,
                                                           WebhookSend.done_at.is_(None))).all())


# --- answers the database will not keep -----------------------------------------------------


def test_an_answer_with_nul_bytes_is_kept_without_them(engine, clock):
    endpoint = add_endpoint(engine)
    publish(engine, purchase("cus_ann"))
    sender(engine, clock, SellerEndpoint(httpx.Response(200, content=b"ok\x00" + b"\x00" * 5000 + b"done"))).run_due()

    [delivery] = deliveries_of(engine, endpoint.id)
    [attempt] = attempts_of(engine, delivery.id)
    assert delivery.status == "delivered"
    assert "\x00" not in attempt.response_excerpt and attempt.response_excerpt.startswith("ok")


def test_an_attempt_that_cannot_be_recorded_is_a_failed_attempt_and_the_queue_moves_on(engine, clock, monkeypatch):
    endpoint = add_endpoint(engine)
    record, refused = deliveries._record, []

    def refusing_once(session, row, now, outcome, disable_after):
        if outcome.succeeded and not refused:
            refused.append(row.id)
            raise IntegrityError("INSERT INTO webhook_attempts", {}, ValueError("refused"))
        record(session, row, now, outcome, disable_after)

    monkeypatch.setattr(deliveries, "_record", refusing_once)
    seller = SellerEndpoint(200)
    run = sender(engine, clock, seller)
    publish(engine, purchase("cus_ann", "pur_1"))
    publish(engine, purchase("cus_ann", "pur_2"))
    run.run_due()

    first, second = deliveries_of(engine, endpoint.id)
    [failed] = attempts_of(engine, first.id)
    assert not failed.succeeded and failed.error == "the answer could not be recorded: IntegrityError"
    assert (first.status, second.status) == ("pending", "waiting") and len(open_sends(engine, first.id)) == 1
    run_until(run, clock, lambda: {d.status for d in deliveries_of(engine, endpoint.id)} == {"delivered"})
    assert len(seller.received) == 3  # the first again, then the one that waited behind it


def test_a_pending_delivery_whose_attempt_was_given_up_gets_a_new_one(engine, clock):
    endpoint = add_endpoint(engine)
    seller = SellerEndpoint(200)
    run = sender(engine, clock, seller)
    publish(engine, purchase("cus_ann", "pur_1"))
    publish(engine, purchase("cus_ann", "pur_2"))
    [first, _] = deliveries_of(engine, endpoint.id)
    with Session(engine) as session:  # as the scheduler leaves a row that failed to run eight times
        [send] = session.exec(select(WebhookSend).where(WebhookSend.delivery_id == first.id)).all()
        send.done_at, send.attempts, send.last_error = clock.now, 8, "OperationalError: ..."
        session.add(send)
        session.commit()
    assert run.run_due() == 0

    run.housekeeping()
    run.run_due()
    run.run_due()
    assert [d.status for d in deliveries_of(engine, endpoint.id)] == ["delivered", "delivered"]
    assert len(seller.received) == 2


# --- an endpoint that answers a byte at a time ----------------------------------------------


class DrippingServer:
    """Answers every request with `answer`: its first `at_once` bytes at once, then a byte every
    0.2 s (a minute and more)."""

    def __init__(self, answer: bytes, at_once: int) -> None:
        self.answer, self.at_once = answer, at_once
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(self.answer[:self.at_once])
                for byte in self.answer[self.at_once:]:
                    connection.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n"


@pytest.mark.parametrize("at_once", [0, len(HEAD)], ids=["head", "body"])
def test_an_attempt_ends_when_its_time_is_up_however_slowly_the_endpoint_answers(engine, clock, at_once):
    server = DrippingServer(HEAD + b"x" * 400, at_once)
    endpoint = add_endpoint(engine, url=server.url)
    publish(engine, purchase("cus_ann"))
    run = Sender(engine, WebhookSettings(timeout_seconds=1), private_allowed=True, clock=clock)  # its own HTTP client
    try:
        started = time.monotonic()
        run.run_due()
        took = time.monotonic() - started
    finally:
        server.close()
        run.close()
    [delivery] = deliveries_of(engine, endpoint.id)
    [attempt] = attempts_of(engine, delivery.id)
    assert not attempt.succeeded and attempt.error == "no answer within 1 s"
    assert took < 3 and delivery.status == "pending"  # retried on the schedule


def test_the_workers_leave_database_connections_to_the_rest_of_the_service(engine, clock):
    assert engine.pool.size() == 5
    assert sender(engine, clock, SellerEndpoint(200), concurrency=32).concurrency == 4


# --- names that resolve somewhere else a moment later ---------------------------------------


def test_the_attempt_connects_to_the_address_that_was_checked(engine, clock, monkeypatch):
    endpoint = add_endpoint(engine, url="https://hooks.seller.test:8443/postsale")
    answers = iter([[(2, 1, 6, "", ("93.184.216.34", 443))], [(2, 1, 6, "", ("10.0.0.7", 443))]])
    # The first look-up is public; whoever resolves the name again gets an address inside the network.
    monkeypatch.setattr(targets.socket, "getaddrinfo", lambda *a, **k: next(answers))
    seller = SellerEndpoint(200)
    publish(engine, purchase("cus_ann"))
    sender(engine, clock, seller, private_allowed=False).run_due()

    [request] = seller.received
    assert str(request.url) == "https://93.184.216.34:8443/postsale"
    assert request.headers["host"] == "hooks.seller.test:8443"
    assert request.extensions["sni_hostname"] == "hooks.seller.test"  # TLS checks the name's certificate
    assert deliveries_of(engine, endpoint.id)[0].status == "delivered"


# --- replays, recoveries ------------------------------------------------------------------------


def test_a_replay_after_the_endpoint_was_stopped_and_started_again_sends_one_chain_of_attempts(engine, clock):
    endpoint = add_endpoint(engine)
    seller = SellerEndpoint(500)
    run = sender(engine, clock, seller)
    publish(engine, purchase("cus_ann"))
    run.run_due()  # failed once: a retry is scheduled in 5 s
    [delivery] = deliveries_of(engine, endpoint.id)
    with Session(engine) as session:
        endpoints.change(session, endpoint_row(engine, endpoint.id), {"enabled": False}, clock.now)
        session.commit()
    clock.move(minutes=10)  # the old retry is due now
    with Session(engine) as session:
        endpoints.change(session, endpoint_row(engine, endpoint.id), {"enabled": True}, clock.now)
        session.commit()
    with Session(engine) as session:
        deliveries.replay(session, session.exec(select(WebhookDelivery)).one(), clock.now)
        session.commit()

    assert len(open_sends(engine, delivery.id)) == 1
    run.run_due()
    assert len(seller.received) == 2  # the first attempt, and the replay's: once


def test_an_endpoint_that_recovered_is_not_disabled_by_one_later_failure(engine, clock):
    endpoint = add_endpoint(engine)
    run = sender(engine, clock, SellerEndpoint(503))
    publish(engine, purchase("cus_ann"))
    run_until(run, clock, lambda: deliveries_of(engine, endpoint.id)[0].status == "failed")
    assert endpoint_row(engine, endpoint.id).failing_since is None  # nothing more is tried

    clock.move(days=10)  # no events for a while: whether it works is not known
    publish(engine, purchase("cus_bob"))
    run.run_due()
    again = endpoint_row(engine, endpoint.id)
    assert again.enabled and again.failing_since is not None


def test_replaying_every_dead_letter_is_done_a_bounded_batch_at_a_time(engine, clock, monkeypatch):
    endpoint = add_endpoint(engine)
    run = sender(engine, clock, SellerEndpoint(503))
    for customer in ("cus_a", "cus_b", "cus_c"):
        publish(engine, purchase(customer))
    run_until(run, clock, lambda: {d.status for d in deliveries_of(engine, endpoint.id)} == {"failed"})
    monkeypatch.setattr(deliveries, "MAX_REPLAY", 2)
    with Session(engine) as session:
        assert deliveries.replay_failed(session, endpoint.id, clock.now) == 2
        assert deliveries.replay_failed(session, endpoint.id, clock.now) == 1
        assert deliveries.replay_failed(session, endpoint.id, clock.now) == 0
        session.commit()
    assert [d.status for d in deliveries_of(engine, endpoint.id)] == ["pending"] * 3


def test_the_disabled_email_shows_the_endpoint_but_never_its_secret(engine, clock):
    endpoint = add_endpoint(engine, alert_emails=["ops@seller.test"])
    with Session(engine) as session:  # the seller's own version of the email
        session.add(TemplateOverride(name=deliveries.DISABLED_TEMPLATE, subject="Off: {{ endpoint.url }}",
                                     text_body="{{ endpoint.id }} {{ endpoint.secret }}",
                                     html_body="<p>{{ endpoint.id }} {{ endpoint.secret }}</p>"))
        session.commit()
    publish(engine, purchase("cus_ann"))
    sender(engine, clock, SellerEndpoint(410)).run_due()

    with Session(engine) as session:
        [email] = session.exec(select(Email).where(Email.template == deliveries.DISABLED_TEMPLATE)).all()
    assert endpoint.id in email.text_body and endpoint.url in email.subject
    assert endpoint.secret not in email.text_body + email.html_body


# --- kept no longer than needed ---------------------------------------------------------------


def test_delivered_deliveries_are_removed_after_the_retention_and_dead_letters_kept(engine, clock):
    endpoint = add_endpoint(engine)
    seller = SellerEndpoint(200)
    run = sender(engine, clock, seller)
    run.retention = timedelta(days=30)
    publish(engine, purchase("cus_old"))
    run.run_due()
    seller.answers = [410]
    publish(engine, purchase("cus_dead"))
    run.run_due()  # a dead letter, and the endpoint disabled
    with Session(engine) as session:
        endpoints.change(session, endpoint_row(engine, endpoint.id), {"enabled": True}, clock.now)
        session.commit()
    clock.move(days=29)
    seller.answers = [200]
    publish(engine, purchase("cus_new"))
    run.run_due()
    old, dead, new = deliveries_of(engine, endpoint.id)

    clock.move(days=2)
    assert run.housekeeping() == 1
    assert run.housekeeping() == 0
    assert [d.id for d in deliveries_of(engine, endpoint.id)] == [dead.id, new.id]
    assert attempts_of(engine, old.id) == [] and len(attempts_of(engine, new.id)) == 1
    with Session(engine) as session:
        assert session.exec(select(WebhookSend).where(WebhookSend.delivery_id == old.id)).all() == []
        assert session.exec(select(WebhookAttempt).where(WebhookAttempt.delivery_id == dead.id)).all() != []
