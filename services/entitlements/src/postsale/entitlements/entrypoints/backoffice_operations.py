"""Entitlements' part of the back office's operations: the reconciliation report (the purchases
entitlements received compared with its grants, as the newest run found them) and a repair on
demand, through the same use cases as the scheduled run. The operations page itself (dead letters,
parked events) is the shared one of `postsale.runtime.operations_pages`, which links here.
"""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session

from postsale.entitlements import reconciliation
from postsale.entitlements.adapters.tables import ReconciliationRun
from postsale.entitlements.entrypoints.pages import templates
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, backoffice_context

pages = APIRouter(prefix="/admin", include_in_schema=False)
REPORT = "/admin/operations/entitlements/reconciliation"
PAGE_SIZE = 50
KINDS = {"paid_without_access": "Paid without access", "access_without_payment": "Access without payment"}


def _number(value: str) -> int:
    return int(value) if value.isascii() and value.isdigit() and 0 < len(value) <= 5 and int(value) > 0 else 1


def _count(value: str) -> int:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 7 else 0


@pages.get("/operations/entitlements/reconciliation", response_class=HTMLResponse)
def reconciliation_report(request: Request, session: SessionDep, owner: OwnerDep, page: str = "1", done: str = "",
                          found: str = "", repaired: str = ""):
    """What the newest reconciliation found, each mismatch with its cause, and when the next runs."""
    run, pending = reconciliation.latest_run(session)
    findings = json.loads(run.report)["findings"] if run is not None and run.report else []
    number = min(_number(page), max(1, -(-len(findings) // PAGE_SIZE)))
    shown = findings[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
    return templates.TemplateResponse(request, "backoffice/reconciliation.html", {
        **backoffice_context(request, owner, "Operations"), "run": run, "pending": pending, "as_utc": as_utc,
        "findings": shown, "findings_count": len(findings), "kinds": KINDS,
        "unrepaired": sum(1 for f in findings if not f.get("repaired")),
        "previous_url": f"{REPORT}?page={number - 1}" if number > 1 else None,
        "next_url": f"{REPORT}?page={number + 1}" if len(findings) > number * PAGE_SIZE else None,
        "done": done == "repaired", "found": _count(found), "repaired": _count(repaired),
        "operations_url": f"{request.app.state.urls.entitlements_url}/admin/operations/entitlements",
    })


@pages.post("/operations/entitlements/reconciliation/repair", dependencies=[Depends(require_csrf)])
def repair_now(request: Request, owner: OwnerDep) -> RedirectResponse:
    """Reconciles now and repairs each mismatch still standing (a ledger entry by `system`, reason
    `reconciliation`, each); the report of this run becomes the newest one."""
    engine = request.app.state.engine
    now = utcnow()
    report = reconciliation.reconcile(engine, repair_them=True, now=now)
    with Session(engine) as session:  # done at once: the scheduler never claims it
        session.add(ReconciliationRun(id=f"reconcile_now_{uuid.uuid4().hex[:12]}", due_at=now, done_at=now,
                                      checked=report.purchases, mismatches=len(report.findings),
                                      repaired=len(report.repaired), report=json.dumps(report.as_dict())))
        session.commit()
    return RedirectResponse(f"{REPORT}?done=repaired&found={len(report.findings)}&repaired={len(report.repaired)}",
                            status_code=303)
