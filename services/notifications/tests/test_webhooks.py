"""Outgoing webhooks as the service runs them, without a broker: events handed over through the
webhooks' own subscription list and inbox, attempts run by the shared scheduler with a clock the
test moves, and HTTP through httpx to a stand-in of the seller's endpoint. Signatures are checked
with the `standardwebhooks` library, as a seller's code would check them."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import event
from sqlmodel import Session, select
from standardwebhooks import Webhook

from postsale.contracts import LoginLinkIssued, PurchaseCompleted, PurchaseRefunded, topics
from postsale.contracts.examples import EXAMPLES
from postsale.notifications.adapters.tables import Email
from postsale.notifications.config import MIGRATIONS_DIR, WebhookSettings
from postsale.notifications.webhooks import deliveries, domain, endpoints, targets
from postsale.notifications.webhooks.consumers import SUBSCRIPTIONS
from postsale.notifications.webhooks.sender import Sender
from postsale.notifications.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSend
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.db import make_engine
from postsale.runtime.messaging.consumer import apply_once
from postsale.runtime.messaging.inbox import InboxMessage
from postsale.runtime.migrations import migrate

pytestmark = pytest.mark.unit
PURCHASE = next(e for e in EXAMPLES if isinstance(e, PurchaseCompleted))
REFUND = next(e for e in EXAMPLES if isinstance(e, PurchaseRefunded))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta) -> None:
        self.now += timedelta(**delta)


class SellerEndpoint:
    """The seller's side: answers each request with the next of `answers` (the last one repeats),
    and keeps what arrived."""

    def __init__(self, *answers: int | httpx.Response | Exception) -> None:
        self.answers = list(answers) or [200]
        self.received: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.received.append(request)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx.Response) else httpx.Response(answer, text=f"status {answer}")


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    monkeypatch.delenv("NOTIFICATIONS_SELLER_EMAILS", raising=False)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    migrate(engine, MIGRATIONS_DIR)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    # The consumer stamps deliveries with the wall clock: the test's starts a moment later.
    return Clock(utcnow() + timedelta(seconds=5))


def sender(engine, clock, seller, *, private_allowed=True, **settings) -> Sender:
    transport = httpx.MockTransport(seller) if callable(seller) else seller
    return Sender(engine, WebhookSettings(**settings), private_allowed=private_allowed, clock=clock,
                  http=httpx.Client(transport=transport))


def add_endpoint(engine, url="https://hooks.seller.test/postsale", event_types=("postsale.purchase.completed",),
                 alert_emails=("ops@seller.test",)) -> WebhookEndpoint:
    with Session(engine) as session:
        endpoint = endpoints.create(session, url=url, event_types=list(event_types), description="CRM",
                                    alert_emails=list(alert_emails), now=utcnow())
        session.commit()
        session.refresh(endpoint)
        return endpoint


def publish(engine, event, event_id: str | None = None) -> str:
    """Hands the event to the webhooks' consumer as Kafka would (passed over when no endpoint
    wants it); returns its event id."""
    event_id = event_id or uuid.uuid4().hex
    subscription = next(s for s in SUBSCRIPTIONS if type(event) in s.handlers)
    if not subscription.wanted(engine, [event])[0]:
        return event_id
    apply_once(engine, subscription.consumer_name, subscription.handlers[type(event)], event, event_id)
    return event_id


def purchase(customer_id: str, purchase_id: str | None = None) -> PurchaseCompleted:
    return PURCHASE.model_copy(update={"customer_id": customer_id,
                                       "purchase_id": purchase_id or f"pur_{uuid.uuid4().hex[:8]}"})


def deliveries_of(engine, endpoint_id: str) -> list[WebhookDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                                 .order_by(WebhookDelivery.seq)).all())


def attempts_of(engine, delivery_id: str) -> list[WebhookAttempt]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                 .order_by(WebhookAttempt.number)).all())


def endpoint_row(engine, endpoint_id: str) -> WebhookEndpoint:
    with Session(engine) as session:
        return session.get(WebhookEndpoint, endpoint_id)


def run_until(run, clock: Clock, done, *, limit=timedelta(days=8)) -> None:
    """Runs what is due, moving the clock to each next attempt's due time, until `done()`."""
    end = clock.now + limit
    while not done():
        run.run_due()
        with Session(run.engine) as session:
            due = session.exec(select(WebhookSend.due_at).where(WebhookSend.done_at.is_(None))
                               .order_by(WebhookSend.due_at)).first()
        if due is not None:
            clock.now = max(clock.now, as_utc(due))
        assert clock.now < end, "not done within the limit"


# --- what arrives -------------------------------------------------------------------------


def test_each_event_arrives_once_signed_so_a_standard_webhooks_library_verifies_it(engine, clock):
    endpoint = add_endpoint(engine)
    seller = SellerEndpoint(200)
    event = purchase("cus_ann", "pur_1")
    event_id = publish(engine, event)
    publish(engine, event, event_id)  # redelivered by Kafka: still one delivery
    publish(engine, REFUND)  # a type the endpoint did not ask for

    assert sender(engine, clock, seller).run_due() == 1
    [request] = seller.received
    body = Webhook(endpoint.secret).verify(request.content, dict(request.headers))
    assert body["type"] == "postsale.purchase.completed"
    assert body["data"]["purchase_id"] == "pur_1" and body["data"]["customer_id"] == "cus_ann"
    assert body["data"]["amount"] == {"amount": PURCHASE.amount.amount, "currency": PURCHASE.amount.currency}
    [delivery] = deliveries_of(engine, endpoint.id)
    assert request.headers["webhook-id"] == delivery.id == domain.message_id(endpoint.id, event_id)
    assert request.headers["content-type"] == "application/json"
    assert delivery.status == "delivered" and endpoint_row(engine, endpoint.id).last_success_at is not None
    [attempt] = attempts_of(engine, delivery.id)
    assert attempt.succeeded and attempt.status_code == 200 and attempt.response_excerpt == "status 200"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_" + "QUJD" * 11).verify(request.content, dict(request.headers))


def test_only_events_an_enabled_endpoint_wants_open_a_transaction(engine):
    wanted = SUBSCRIPTIONS[0].wanted
    assert wanted(engine, [PURCHASE, REFUND]) == [False, False]  # no endpoint yet
    endpoint = add_endpoint(engine, event_types=("postsale.purchase.completed",))
    add_endpoint(engine, url="https://hooks.seller.test/other", event_types=("postsale.purchase.refunded",))
    assert wanted(engine, [PURCHASE, REFUND]) == [True, True]
    with Session(engine) as session:
        other = session.exec(select(WebhookEndpoint).where(WebhookEndpoint.id != endpoint.id)).one()
        endpoints.change(session, other, {"enabled": False}, utcnow())
        session.commit()
    assert wanted(engine, [PURCHASE, REFUND]) == [True, False]  # a disabled endpoint wants nothing
    assert all(subscription.wanted is wanted for subscription in SUBSCRIPTIONS)

    publish(engine, REFUND)
    with Session(engine) as session:  # passed over: no inbox row, no delivery
        assert session.exec(select(InboxMessage)).all() == []
        assert session.exec(select(WebhookDelivery)).all() == []


def test_restricted_events_are_never_forwarded_nor_offered():
    forwarded = {event for subscription in SUBSCRIPTIONS for event in subscription.handlers}
    assert PurchaseCompleted in forwarded and LoginLinkIssued not in forwarded
    restricted = {t.name for t in topics.ALL if t.restricted}
    assert "entitlements.license-keys.v1" in restricted
    assert {s.topic for s in SUBSCRIPTIONS}.isdisjoint(restricted)
    assert domain.unknown_event_types(["postsale.login_link.issued", "postsale.purchase.completed"]) == \
        ["postsale.login_link.issued"]
    # Their own consumer group: the emails' offsets and inbox are not shared.
    assert {s.group_id for s in SUBSCRIPTIONS} == {"postsale-notifications-webhooks"}


# --- retries, dead letters, replays -------------------------------------------------------


def test_a_failing_delivery_is_retried_for_three_days_then_kept_as_a_dead_letter_and_replayed(engine, clock):
    endpoint = add_endpoint(engine)
    seller = SellerEndpoint(httpx.ReadTimeout("too slow"), httpx.Response(503, text="x" * 5000))
    run = sender(engine, clock, seller)
    started = clock.now
    publish(engine, purchase("cus_ann"))

    [delivery] = deliveries_of(engine, endpoint.id)
    run_until(run, clock, lambda: deliveries_of(engine, endpoint.id)[0].status == "failed")
    attempts = attempts_of(engine, delivery.id)
    assert len(attempts) == len(domain.RETRY_SCHEDULE) + 1 == 10
    span = as_utc(attempts[-1].attempted_at) - started
    assert timedelta(hours=71) < span < timedelta(hours=73)  # about three days
    gaps = [as_utc(b.attempted_at) - as_utc(a.attempted_at) for a, b in zip(attempts, attempts[1:])]
    assert gaps == sorted(gaps) and gaps[0] < timedelta(minutes=2)
    assert attempts[0].error.startswith("no answer: ReadTimeout") and attempts[0].status_code is None
    assert attempts[1].status_code == 503 and len(attempts[1].response_excerpt) == domain.EXCERPT_CHARS
    assert {r.headers["webhook-id"] for r in seller.received} == {delivery.id}
    assert endpoint_row(engine, endpoint.id).enabled  # three days are not enough to disable it

    seller.answers = [200]
    with Session(engine) as session:
        dead = session.exec(select(WebhookDelivery).where(WebhookDelivery.id == delivery.id)).one()
        deliveries.replay(session, dead, clock.now)
        session.commit()
    assert run.run_due() == 1
    [replayed] = deliveries_of(engine, endpoint.id)
    assert replayed.status == "delivered" and replayed.attempts == 11
    assert seller.received[-1].headers["webhook-id"] == delivery.id  # the receiver can deduplicate
    with Session(engine) as session, pytest.raises(deliveries.Conflict):
        deliveries.replay(session, session.exec(select(WebhookDelivery)).one(), clock.now)


def test_deliveries_keep_their_order_per_customer_and_one_customer_never_holds_up_another(engine, clock):
    endpoint = add_endpoint(engine)
    seller = SellerEndpoint(500, 200)
    run = sender(engine, clock, seller)
    publish(engine, purchase("cus_ann", "pur_a1"))
    publish(engine, purchase("cus_ann", "pur_a2"))
    publish(engine, purchase("cus_bob", "pur_b1"))

    run.run_due()  # pur_a1 fails; pur_a2 waits behind it; pur_b1 goes
    sent = [Webhook(endpoint.secret).verify(r.content, dict(r.headers))["data"]["purchase_id"]
            for r in seller.received]
    assert sent == ["pur_a1", "pur_b1"]
    statuses = {d.payload.split('"purchase_id":"')[1][:6]: d.status for d in deliveries_of(engine, endpoint.id)}
    assert statuses == {"pur_a1": "pending", "pur_a2": "waiting", "pur_b1": "delivered"}

    clock.move(minutes=1)
    run.run_due()
    run.run_due()
    sent = [Webhook(endpoint.secret).verify(r.content, dict(r.headers))["data"]["purchase_id"]
            for r in seller.received]
    assert sent == ["pur_a1", "pur_b1", "pur_a1", "pur_a2"]
    assert {d.status for d in deliveries_of(engine, endpoint.id)} == {"delivered"}


def test_an_endpoint_failing_for_days_is_disabled_and_the_seller_is_told(engine, clock):
    endpoint = add_endpoint(engine, alert_emails=["ops@seller.test"])
    run = sender(engine, clock, SellerEndpoint(502))
    publish(engine, purchase("cus_ann"))
    run_until(run, clock, lambda: deliveries_of(engine, endpoint.id)[0].attempts == 9)  # two days on
    publish(engine, purchase("cus_bob"))  # the endpoint still gets events while ann's is retried
    run_until(run, clock, lambda: not endpoint_row(engine, endpoint.id).enabled)

    disabled = endpoint_row(engine, endpoint.id)
    assert as_utc(disabled.disabled_at) - as_utc(disabled.failing_since) >= timedelta(days=5)
    assert "answered 502" in disabled.disabled_reason
    assert [d.status for d in deliveries_of(engine, endpoint.id)] == ["failed", "failed"]
    with Session(engine) as session:
        [email] = session.exec(select(Email).where(Email.template == "webhook_endpoint_disabled")).all()
    assert email.to == "ops@seller.test"
    assert email.subject == "Webhook endpoint disabled: https://hooks.seller.test/postsale"
    assert f"PATCH /admin/webhook-endpoints/{endpoint.id}" in email.text_body
    assert "2 delivery(ies) wait as dead letters" in email.text_body

    publish(engine, purchase("cus_cid"))  # disabled: nothing more is queued for it
    assert len(deliveries_of(engine, endpoint.id)) == 2
    with Session(engine) as session, pytest.raises(deliveries.Conflict, match="enable it first"):
        deliveries.replay_failed(session, endpoint.id, clock.now)


def test_an_endpoint_answering_410_gone_is_disabled_at_once_and_the_seller_is_told(engine, clock):
    endpoint = add_endpoint(engine, alert_emails=["ops@seller.test"])
    publish(engine, purchase("cus_ann"))
    sender(engine, clock, SellerEndpoint(410)).run_due()

    disabled = endpoint_row(engine, endpoint.id)
    assert not disabled.enabled and "410 Gone" in disabled.disabled_reason
    [delivery] = deliveries_of(engine, endpoint.id)
    assert delivery.status == "failed" and delivery.attempts == 1
    with Session(engine) as session:
        [email] = session.exec(select(Email).where(Email.template == "webhook_endpoint_disabled")).all()
    assert email.to == "ops@seller.test" and "410 Gone" in email.text_body


# --- one endpoint never stalls the others -------------------------------------------------


def test_a_slow_endpoint_leaves_the_workers_to_the_others(engine, clock):
    slow = add_endpoint(engine, url="https://slow.seller.test/hook")
    fast = add_endpoint(engine, url="https://fast.seller.test/hook", event_types=["postsale.purchase.refunded"])
    release, arrived = threading.Event(), threading.Event()

    def seller(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow.seller.test":
            arrived.set()
            release.wait(10)
        return httpx.Response(200)

    run = sender(engine, clock, seller, per_endpoint_concurrency=1)
    publish(engine, purchase("cus_ann"))  # the slow endpoint's, due first
    publish(engine, purchase("cus_bob"))
    publish(engine, REFUND.model_copy(update={"customer_id": "cus_ann"}))  # the fast one's
    publish(engine, REFUND.model_copy(update={"customer_id": "cus_bob"}))
    worker = threading.Thread(target=run.run_one)
    worker.start()
    try:
        assert arrived.wait(10)
        # The slow endpoint has its one attempt running: the next worker serves the fast one.
        while run.run_one():
            pass
        assert [d.status for d in deliveries_of(engine, fast.id)] == ["delivered", "delivered"]
        assert sorted(d.status for d in deliveries_of(engine, slow.id)) == ["pending", "pending"]
    finally:
        release.set()
        worker.join(10)
    run.run_due()
    assert [d.status for d in deliveries_of(engine, slow.id)] == ["delivered", "delivered"]


def test_workers_running_at_once_send_each_attempt_once(engine, clock):
    # SQLite locks no rows: the workers of one process keep apart the attempts they run.
    endpoint = add_endpoint(engine)
    received: list[str] = []
    lock = threading.Lock()

    def seller(request: httpx.Request) -> httpx.Response:
        with lock:
            received.append(request.headers["webhook-id"])
        threading.Event().wait(0.05)  # long enough for the workers to overlap
        return httpx.Response(204)

    run = sender(engine, clock, seller, concurrency=4, per_endpoint_concurrency=4)
    for number in range(12):
        publish(engine, purchase(f"cus_{number}"))
    workers = [threading.Thread(target=run.run_due) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    run.run_due()

    sent = deliveries_of(engine, endpoint.id)
    assert [d.status for d in sent] == ["delivered"] * 12
    assert sorted(received) == sorted(d.id for d in sent)  # each once
    assert all(d.attempts == 1 for d in sent)


def test_an_attempt_is_not_taken_by_another_worker_before_its_end_is_committed(engine, clock):
    # On SQLite nothing locks the row: between the attempt's end and its commit, the row still
    # looks due to another worker, which must leave it to the one that ran it.
    add_endpoint(engine)
    seller = SellerEndpoint(204)
    run = sender(engine, clock, seller)
    publish(engine, purchase("cus_ann"))
    ran_meanwhile: list[bool] = []
    other_worker_done = threading.Event()
    first_worker = threading.current_thread()

    def another_worker_at_the_commit(_session) -> None:
        if threading.current_thread() is first_worker and not ran_meanwhile:
            ran_meanwhile.append(False)
            def other() -> None:
                ran_meanwhile[0] = run.run_one()
                other_worker_done.set()
            threading.Thread(target=other).start()
            # Another call to the seller would come at once; writing its attempt waits for this commit.
            other_worker_done.wait(3)

    event.listen(Session, "before_commit", another_worker_at_the_commit)
    try:
        assert run.run_one()
    finally:
        event.remove(Session, "before_commit", another_worker_at_the_commit)
    assert other_worker_done.wait(30)
    assert ran_meanwhile == [False]  # nothing else was due
    assert len(seller.received) == 1


def test_a_private_target_is_refused_in_production_on_each_attempt(engine, clock, monkeypatch):
    endpoint = add_endpoint(engine, url="https://hooks.seller.test/postsale")
    seller = SellerEndpoint(200)
    # The name resolved to a public address when registered; now it points inside the network.
    monkeypatch.setattr(targets.socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("10.0.0.7", 443))])
    publish(engine, purchase("cus_ann"))
    sender(engine, clock, seller, private_allowed=False).run_due()

    assert seller.received == []
    [delivery] = deliveries_of(engine, endpoint.id)
    [attempt] = attempts_of(engine, delivery.id)
    assert not attempt.succeeded and "resolves to 10.0.0.7, which is not a public address" in attempt.error


@pytest.mark.parametrize(("url", "private_allowed", "refusal"), [
    ("https://hooks.seller.test/x", False, None),
    ("http://hooks.seller.test/x", False, "must be https"),
    ("http://hooks.seller.test/x", True, "must be https"),  # plain http only to this machine
    ("http://127.0.0.1:8080/x", True, None),
    ("http://localhost:8080/x", False, "must be https"),
    ("https://localhost/x", False, "private or loopback"),
    ("https://10.1.2.3/x", False, "private or loopback"),
    ("https://[::ffff:192.168.1.1]/x", False, "private or loopback"),
    ("https://169.254.169.254/latest/meta-data", False, "private or loopback"),
    ("https://user:pw@hooks.seller.test/x", False, "user name or password"),
    ("ftp://hooks.seller.test/x", False, "https URL"),
    ("https://hooks.seller.test/x y", False, "without spaces"),
])
def test_which_urls_an_endpoint_may_have(url, private_allowed, refusal):
    if refusal is None:
        assert targets.check_url(url, private_allowed=private_allowed) == url
    else:
        with pytest.raises(targets.TargetRefused, match=refusal):
            targets.check_url(url, private_allowed=private_allowed)


def test_private_targets_are_refused_unless_allowed_on_purpose():
    # Local development is no exception: `make run` and the tests set the variable themselves.
    assert not targets.private_allowed(None)
    assert not targets.private_allowed(False)
    assert targets.private_allowed(True)


def test_the_retry_schedule_lasts_about_three_days():
    now = datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert timedelta(hours=71) < sum(domain.RETRY_SCHEDULE, timedelta()) < timedelta(hours=73)
    assert domain.next_attempt_at(1, now) == now + timedelta(seconds=5)
    assert domain.next_attempt_at(len(domain.RETRY_SCHEDULE) + 1, now) is None
