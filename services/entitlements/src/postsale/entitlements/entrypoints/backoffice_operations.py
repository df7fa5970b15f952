"""Entitlements' part of the back office's operations: the reconciliation report (the purchases
entitlements received compared with its grants, as the newest run found them) and a repair on
demand, through the same use cases as the scheduled run. The operations page itself (dead letters,
parked events) is the shared one of `postsale.runtime.operations_pages`, which links here.

After a repair the report says what that run found and repaired, read from the run the address
names (never counts from the address).
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session

from postsale.entitlements import reconciliation
from postsale.entitlements.adapters.tables import ReconciliationRun
from postsale.entitlements.entrypoints.backoffice_forms import is_id
from postsale.entitlements.entrypoints.pages import templates
from postsale.runtime.backoffice import page_number, page_of_list
from postsale.runtime.clock import as_utc, utcnow
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, backoffice_context

pages = APIRouter(prefix="/admin", include_in_schema=False)
REPORT = "/admin/operations/entitlements/reconciliation"
REPAIR_PREFIX = "reconcile_now_"  # the runs made by a repair on demand, not by the schedule
KINDS = {"paid_without_access": "Paid without access", "access_without_payment": "Access without payment"}


@pages.get("/operations/entitlements/reconciliation", response_class=HTMLResponse)
def reconciliation_report(request: Request, session: SessionDep, owner: OwnerDep, page: str = "1", done: str = "",
                          run: str = ""):
    """What the newest reconciliation found, each mismatch with its cause, and when the next runs."""
    newest, pending = reconciliation.latest_run(session)
    findings = json.loads(newest.report)["findings"] if newest is not None and newest.report else []
    shown, number, more = page_of_list(findings, page_number(page))
    repair = session.get(ReconciliationRun, run) if done == "repaired" and is_id(run) else None
    return templates.TemplateResponse(request, "backoffice/reconciliation.html", {
        **backoffice_context(request, owner, "Operations"), "run": newest, "pending": pending, "as_utc": as_utc,
        "findings": shown, "findings_count": len(findings), "kinds": KINDS,
        "unrepaired": sum(1 for f in findings if not f.get("repaired")),
        "previous_url": f"{REPORT}?page={number - 1}" if number > 1 else None,
        "next_url": f"{REPORT}?page={number + 1}" if more else None,
        "repair": repair if repair is not None and repair.id.startswith(REPAIR_PREFIX) else None,
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
        made = ReconciliationRun(id=f"{REPAIR_PREFIX}{uuid.uuid4().hex[:12]}", due_at=now, done_at=now,
                                 checked=report.purchases, mismatches=len(report.findings),
                                 repaired=len(report.repaired), report=json.dumps(report.as_dict()))
        session.add(made)
        session.commit()
        run_id = made.id
    return RedirectResponse(f"{REPORT}?" + urlencode({"done": "repaired", "run": run_id}), status_code=303)
