"""What the customer and the seller see of a customer's access: read models and queries for the
pages and the admin API. They change nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

from sqlalchemy import Row, bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from postsale.entitlements.adapters.tables import AccessEntry, Customer, Grant, Product, Purchase
from postsale.entitlements.domain.access import ACCESS_PERIOD_ENDED, GRANTED_BY_SELLER, PURCHASE, GrantView, available
from postsale.runtime.clock import as_utc, utcnow


def _utc(moment: datetime | None) -> datetime | None:
    """In UTC, whatever zone the database handed it back in (SQLite: none)."""
    return as_utc(moment).astimezone(timezone.utc) if moment is not None else None


@dataclass
class ProductAccess:
    """One product of a customer: whether it is available, thanks to which grants, or why not."""

    product_id: str
    name: str
    description: str
    delivery_type: str
    available: bool
    until: datetime | None  # when available access ends by itself; None: it does not
    since: datetime | None  # when the oldest grant that gives it was given
    active: list[Grant]  # the grants that give it
    grants: list[Grant] = field(default_factory=list)  # every grant of it, newest change first
    unavailable_because: str | None = None  # the newest change that ended (or held) one of its grants
    unavailable_since: datetime | None = None


def _view(grant: Grant) -> GrantView:
    return GrantView(grant.id, grant.product_id, grant.status, as_utc(grant.ends_at))  # type: ignore[arg-type]


def why_granted(grant: Grant) -> str:
    return PURCHASE if grant.source == "purchase" else GRANTED_BY_SELLER


def customer_access(session: Session, customer_id: str, now: datetime | None = None) -> list[ProductAccess]:
    """Every product the customer has or had, available ones first (newest grant first), from the
    current-access table in one query."""
    now = now or utcnow()
    rows = session.exec(select(Grant, Product)
                        .join(Product, Product.id == Grant.product_id, isouter=True)  # type: ignore[arg-type]
                        .where(Grant.customer_id == customer_id)).all()
    products: dict[str, Product | None] = {}
    grants: dict[str, list[Grant]] = {}
    for grant, product in rows:
        products[grant.product_id] = product
        grants.setdefault(grant.product_id, []).append(grant)
    active = available((_view(g) for its_grants in grants.values() for g in its_grants), now)
    out = []
    for product_id, its_grants in grants.items():
        by_id = {g.id: g for g in its_grants}
        giving = sorted((by_id[v.grant_id] for v in active.get(product_id, [])), key=lambda g: as_utc(g.granted_at))
        its_grants.sort(key=lambda g: g.last_seq, reverse=True)
        ended = [g for g in its_grants if g not in giving]
        product = products[product_id]
        ends = [_utc(g.ends_at) for g in giving]
        out.append(ProductAccess(
            product_id=product_id, name=product.name if product else its_grants[0].product_name,
            description=product.description if product else "",
            delivery_type=product.delivery_type if product else its_grants[0].delivery_type,
            available=bool(giving), until=None if None in ends else max(ends, default=None),  # type: ignore[type-var]
            since=_utc(giving[0].granted_at) if giving else None, active=giving, grants=its_grants,
            unavailable_because=None if giving or not ended else _why_ended(ended[0]),
            unavailable_since=None if giving or not ended else _when_ended(ended[0]),
        ))
    latest = {p.product_id: max(as_utc(g.granted_at) for g in (p.active or p.grants)) for p in out}
    return sorted(out, key=lambda p: (not p.available, -latest[p.product_id].timestamp()))


def _why_ended(grant: Grant) -> str:
    # An active grant past its end that the scheduler has not recorded yet.
    if grant.status == "active" and grant.ends_at is not None:
        return grant.ends_because or ACCESS_PERIOD_ENDED
    return grant.reason


def _when_ended(grant: Grant) -> datetime:
    return _utc(grant.ends_at) if grant.status == "active" and grant.ends_at is not None else _utc(grant.changed_at)


def library(session: Session, customer_id: str, now: datetime | None = None) -> list[ProductAccess]:
    """The products a customer may use now, newest first."""
    return [p for p in customer_access(session, customer_id, now) if p.available]


@dataclass(frozen=True)
class LibraryProduct:
    """A product the customer may use now, as the library's JSON shows it."""

    product_id: str
    name: str
    description: str
    delivery_type: str


_grants, _products = Grant.__table__, Product.__table__  # type: ignore[attr-defined]
# Built once: building and keying a statement per request costs more than running it.
LIBRARY_ROWS = (core_select(_grants.c.id, _grants.c.product_id, _grants.c.status, _grants.c.ends_at,
                            _grants.c.granted_at, _grants.c.last_seq, _grants.c.product_name,
                            _grants.c.delivery_type, _products.c.name.label("catalog_name"),
                            _products.c.description, _products.c.delivery_type.label("catalog_delivery_type"))
                .select_from(_grants.outerjoin(_products, _products.c.id == _grants.c.product_id))
                .where(_grants.c.customer_id == bindparam("customer_id")))
"""A customer's grants with the catalog's name of each product, for `library_products`: only the
columns the JSON shows, read as plain rows rather than every column of both as ORM objects (which
cost several times the query itself)."""


def library_products(rows: Sequence[Row], now: datetime | None = None) -> list[LibraryProduct]:
    """What `library` lists (the same products, names and order), from the customer's
    `LIBRARY_ROWS`."""
    now = now or utcnow()
    by_product: dict[str, list] = {}
    for row in rows:
        by_product.setdefault(row.product_id, []).append(row)
    giving = available((GrantView(r.id, r.product_id, r.status, as_utc(r.ends_at)) for r in rows), now)
    out: list[tuple[datetime, LibraryProduct]] = []
    for product_id, its_rows in by_product.items():
        if not giving.get(product_id):
            continue
        giving_ids = {v.grant_id for v in giving[product_id]}
        latest = max(as_utc(r.granted_at) for r in its_rows if r.id in giving_ids)
        first = its_rows[0]
        if first.catalog_name is not None:
            shown = LibraryProduct(product_id, first.catalog_name, first.description, first.catalog_delivery_type)
        else:  # gone from the catalog: as `customer_access`, named after its newest-changed grant
            newest = max(its_rows, key=lambda r: r.last_seq)
            shown = LibraryProduct(product_id, newest.product_name, "", newest.delivery_type)
        out.append((latest, shown))
    return [product for _, product in sorted(out, key=lambda p: -p[0].timestamp())]


def check_access(session: Session, customer_id: str, product_id: str, now: datetime | None = None) -> Grant | None:
    """The oldest active grant that gives the customer the product now, or None."""
    now = now or utcnow()
    grants = session.exec(select(Grant).where(Grant.customer_id == customer_id, Grant.product_id == product_id,
                                              Grant.status == "active")).all()
    views = available((_view(g) for g in grants), now)
    giving = {v.grant_id for v in views.get(product_id, [])}
    return min((g for g in grants if g.id in giving), key=lambda g: as_utc(g.granted_at), default=None)


def purchases_seen(session: Session, customer_id: str, purchase_ids: list[str]) -> set[str]:
    """Which of these purchases of the customer entitlements has received (and so granted)."""
    if not purchase_ids:
        return set()
    return set(session.exec(select(Purchase.id).where(Purchase.id.in_(purchase_ids),  # type: ignore[attr-defined]
                                                      Purchase.customer_id == customer_id)).all())


def customer_email(session: Session, customer_id: str) -> str | None:
    customer = session.get(Customer, customer_id)
    return customer.email if customer else None


def ledger(session: Session, customer_id: str) -> list[AccessEntry]:
    """Every change of a customer's access, in the order it happened."""
    return list(session.exec(
        select(AccessEntry).where(AccessEntry.customer_id == customer_id).order_by(AccessEntry.seq)
    ).all())


LEDGER_PAGE_SIZE = 50


def ledger_page(session: Session, customer_id: str, page: int = 1,
                size: int = LEDGER_PAGE_SIZE) -> tuple[list[AccessEntry], bool]:
    """One page of a customer's ledger, newest change first, and whether older entries follow."""
    rows = session.exec(select(AccessEntry).where(AccessEntry.customer_id == customer_id)
                        .order_by(AccessEntry.seq.desc())  # type: ignore[attr-defined]
                        .offset((page - 1) * size).limit(size + 1)).all()
    return list(rows[:size]), len(rows) > size
