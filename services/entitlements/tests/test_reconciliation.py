"""Reconciliation on a real (SQLite) database: mismatches seeded behind the use cases' back (as a bug,
a lost change or a hand-edited row would leave them) are found with their cause, repaired through the
use cases with ledger entries by `system`, reason `reconciliation`, and gone on the next run."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from delivery_support import (CUSTOMER, EMAIL, T0, admin_app, admin_headers, handle, migrated_engine, paid, product,
                              refunded)
from postsale.contracts import AccessPolicy
from postsale.entitlements import access_views, grants, handlers, reconcile, reconciliation
from postsale.entitlements.adapters.tables import Grant, ReconciliationRun
from postsale.entitlements.config import DeliverySettings
from postsale.entitlements.entrypoints import admin_delivery

pytestmark = pytest.mark.unit
NOW = T0 + timedelta(days=2)


@pytest.fixture
def engine(tmp_path):
    engine = migrated_engine(f"sqlite:///{tmp_path / 'entitlements.db'}")
    yield engine
    engine.dispose()


def sql(engine, statement: str, **params) -> None:
    with Session(engine) as session:
        session.execute(text(statement), params)
        session.commit()


def grant_of(engine, purchase_id: str) -> Grant | None:
    with Session(engine) as session:
        return session.exec(select(Grant).where(Grant.purchase_id == purchase_id)).first()


def test_each_kind_of_mismatch_is_found_with_its_cause_and_repaired_through_the_use_cases(engine):
    course = product(engine, "Course", "membership")
    kept, refunded_one, lost_row, never_granted, orphan = (paid(course, purchase_id=f"pur_{n}") for n in range(1, 6))
    for purchase in (kept, refunded_one, lost_row, never_granted, orphan):
        handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    handle(engine, handlers.apply_refund, refunded(refunded_one, T0 + timedelta(hours=1)), T0 + timedelta(hours=1))
    with Session(engine) as session:  # a seller's gift: theirs to give, never a mismatch
        grants.grant_by_seller(session, customer_id=CUSTOMER, product_id=course, now=T0)
        session.commit()

    # What a lost change, a bug or a hand edit would leave behind:
    sql(engine, "UPDATE access_grants SET status = 'revoked', reason = 'oops' WHERE purchase_id = 'pur_1'")
    sql(engine, "UPDATE access_grants SET status = 'active' WHERE purchase_id = 'pur_2'")
    sql(engine, "DELETE FROM access_grants WHERE purchase_id = 'pur_3'")
    sql(engine, "DELETE FROM access_grants WHERE purchase_id = 'pur_4'")
    sql(engine, "DELETE FROM access_ledger WHERE purchase_id = 'pur_4'")
    sql(engine, "DELETE FROM purchases WHERE id = 'pur_5'")

    report = reconciliation.reconcile(engine, now=NOW)
    found = {f.purchase_id: (f.kind, f.actual, f.cause) for f in report.findings}
    assert found == {
        "pur_1": ("paid_without_access", "revoked",
                  "the grant is revoked (oops), but nothing the purchase's events say ends or holds it"),
        "pur_2": ("access_without_payment", "active",
                  "full refund on 2026-11-22 13:00 UTC should have revoked the grant, but it is still active"),
        "pur_3": ("paid_without_access", "missing", "no grant was recorded for this product of the purchase"),
        "pur_4": ("paid_without_access", "missing", "no grant was recorded for this product of the purchase"),
        "pur_5": ("access_without_payment", "active", "no purchase pur_5 was ever received for this grant"),
    }
    seq_before = len(access_views.ledger(Session(engine), CUSTOMER))

    repaired = reconciliation.reconcile(engine, now=NOW, repair_them=True)
    assert len(repaired.repaired) == 5 and repaired.unrepaired == []
    assert [(g.purchase_id, g.status) for g in map(lambda p: grant_of(engine, p), ("pur_1", "pur_2", "pur_3",
                                                                                   "pur_4", "pur_5"))] == [
        ("pur_1", "active"), ("pur_2", "revoked"), ("pur_3", "active"), ("pur_4", "active"), ("pur_5", "revoked")]
    with Session(engine) as session:
        entries = access_views.ledger(session, CUSTOMER)[seq_before:]
    assert {(e.purchase_id, e.action, e.reason, e.actor) for e in entries} == {
        ("pur_1", "restore", "reconciliation", "system"), ("pur_2", "revoke", "reconciliation", "system"),
        ("pur_3", "restore", "reconciliation", "system"), ("pur_4", "grant", "reconciliation", "system"),
        ("pur_5", "revoke", "reconciliation", "system")}
    assert all(e.note.startswith("reconciliation: ") for e in entries)
    assert reconciliation.reconcile(engine, now=NOW).findings == []


def test_a_scheduled_end_just_passed_is_left_to_the_scheduler(engine):
    course = product(engine, "Course", "membership")
    handle(engine, handlers.grant_access_for_purchase,
           paid(course, purchase_id="pur_1", policy=AccessPolicy(access_days=1)), T0)
    ends = T0 + timedelta(days=1)
    assert reconciliation.reconcile(engine, now=ends + timedelta(minutes=1)).findings == []
    [late] = reconciliation.reconcile(engine, now=ends + timedelta(hours=1)).findings
    assert (late.kind, late.expected, late.cause) == (
        "access_without_payment", "expired",
        "access period ended on 2026-11-23 12:00 UTC should have ended the grant, but it is still active")


def test_the_scheduled_run_keeps_its_report_and_schedules_the_next(engine):
    course = product(engine, "Course", "membership")
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), T0)
    sql(engine, "UPDATE access_grants SET status = 'expired' WHERE purchase_id = 'pur_1'")
    reconciliation.ensure_scheduled(engine, timedelta(hours=24), NOW)
    reconciliation.ensure_scheduled(engine, timedelta(hours=24), NOW)  # a second replica starting
    with Session(engine) as session:
        [row] = session.exec(select(ReconciliationRun)).all()
        reconciliation.run_scheduled(session, row, NOW, settings=DeliverySettings(reconcile_repair=True))
        session.commit()
    with TestClient(admin_app(engine, admin_delivery.admin_delivery), headers=admin_headers()) as api:
        last = api.get("/admin/reconciliation").json()
    assert (last["purchases"], last["mismatches"], last["repaired"]) == (1, 1, 1)
    assert last["findings"][0]["kind"] == "paid_without_access" and last["findings"][0]["repaired"] is True
    assert last["next_run_at"] is not None
    assert grant_of(engine, "pur_1").status == "active"


def test_the_command_shows_progress_reports_and_repairs(engine, tmp_path, capsys):
    course = product(engine, "Course", "membership")
    handle(engine, handlers.grant_access_for_purchase, paid(course, purchase_id="pur_1"), T0)
    sql(engine, "UPDATE access_grants SET status = 'revoked', reason = 'lost' WHERE purchase_id = 'pur_1'")
    url = f"sqlite:///{tmp_path / 'entitlements.db'}"

    assert reconcile.main(["--database-url", url]) == 1
    out, err = capsys.readouterr()
    assert "1/1 purchases" in err
    assert "Paid without access (1):" in out and f"customer {CUSTOMER}, product {course}, purchase pur_1" in out
    assert "Run again with --repair" in out

    assert reconcile.main(["--database-url", url, "--repair"]) == 0
    assert "[repaired]" in capsys.readouterr().out
    assert reconcile.main(["--database-url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    with Session(engine) as session:
        assert access_views.customer_email(session, CUSTOMER) == EMAIL


def test_a_refund_not_applied_is_found_at_once_however_recent(engine):
    course = product(engine, "Course", "membership")
    purchase = paid(course, purchase_id="pur_1")
    handle(engine, handlers.grant_access_for_purchase, purchase, T0)
    handle(engine, handlers.apply_refund, refunded(purchase, T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1))
    sql(engine, "UPDATE access_grants SET status = 'active' WHERE purchase_id = 'pur_1'")
    [finding] = reconciliation.reconcile(engine, now=T0 + timedelta(minutes=2)).findings
    assert (finding.kind, finding.expected) == ("access_without_payment", "revoked")
