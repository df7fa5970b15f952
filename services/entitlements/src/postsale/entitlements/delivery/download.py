"""`download`: files the seller uploaded, fetched through short-lived links.

When access is granted, a link to each file is published as `DownloadLinkIssued` (on the
restricted topic, for the email that delivers it); the library makes a fresh link at every click.
A link is a random 256-bit token of which only the SHA-256 is kept. It works while it has not
expired *and* its grant is active: it stops the moment access is revoked or suspended, whatever
its expiry. Each download is counted against the grant's limit (the grant's own, else the
product's; none: no limit), under the grant's row lock, so two clicks cannot both take the last one.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, select

from postsale.contracts import DownloadLinkIssued
from postsale.entitlements.adapters.tables import Delivery, Download, DownloadLink, Grant, Product, ProductFile
from postsale.entitlements.config import SERVICE
from postsale.entitlements.delivery.base import BaseStrategy, DeliveryContext, Result, RetryLater, product_settings
from postsale.entitlements.domain.access import GrantView, is_active
from postsale.runtime.clock import as_utc
from postsale.runtime.messaging import publish_later

SOURCE = f"/postsale/{SERVICE}"


class DownloadSettings(BaseModel):
    download_limit: int | None = Field(default=None, ge=1, le=100_000,
                                       description="Downloads per grant (all files together); empty: no limit. "
                                                   "A grant may have a limit of its own.")


class DownloadStrategy(BaseStrategy):
    delivery_type = "download"
    settings_model = DownloadSettings

    def grant(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        if delivery.ledger_action != "grant":
            return Result("done", "access is back: the library makes links again")
        product = ctx.product(delivery)
        files = live_files(ctx.session, delivery.product_id)
        if product is None or not files:
            raise RetryLater("the product has no file yet: upload one and the link goes out")
        grant = ctx.grant(delivery)
        lifetime = timedelta(minutes=ctx.settings.download_link_minutes)
        left = downloads_left(ctx.session, grant, product)
        for file in files:
            token, link = issue_link(ctx.session, grant, file, purpose="email", now=ctx.now, lifetime=lifetime)
            publish_later(ctx.session, DownloadLinkIssued(
                link_id=link.id, customer_id=grant.customer_id, email=delivery.email, product_id=product.id,
                product_name=product.name, file_name=file.name, url=link_url(ctx.urls.entitlements_url, token),
                expires_at=link.expires_at, downloads_left=left, purchase_id=grant.purchase_id, issued_at=ctx.now,
            ), source=SOURCE)
        return Result("done", f"{len(files)} link{'s' if len(files) != 1 else ''} sent")

    def revoke(self, ctx: DeliveryContext, delivery: Delivery) -> Result:
        return Result("done", "its links stopped working")


# --- files ---------------------------------------------------------------------------------


def storage_key(product_id: str, file_id: str) -> str:
    return f"{product_id}/{file_id}"


def new_file_id() -> str:
    return f"file_{uuid.uuid4().hex[:16]}"


def add_file(session: Session, *, file_id: str, product_id: str, name: str, content_type: str, size: int,
             sha256: str, now: datetime) -> ProductFile:
    """Records a file already written to storage under `storage_key(product_id, file_id)`."""
    file = ProductFile(id=file_id, product_id=product_id, name=name, content_type=content_type, size=size,
                       sha256=sha256, storage_key=storage_key(product_id, file_id), uploaded_at=now)
    session.add(file)
    return file


def remove_file(session: Session, product_id: str, file_id: str, now: datetime) -> ProductFile:
    """Takes a file out of the product; links to it stop working. The caller deletes the bytes."""
    file = session.get(ProductFile, file_id)
    if file is None or file.product_id != product_id or file.removed_at is not None:
        raise UnknownFile(file_id)
    file.removed_at = now
    session.add(file)
    return file


def live_files(session: Session, product_id: str) -> list[ProductFile]:
    return list(session.exec(select(ProductFile).where(ProductFile.product_id == product_id,
                                                       ProductFile.removed_at.is_(None))  # type: ignore[union-attr]
                             .order_by(ProductFile.uploaded_at, ProductFile.id)).all())


# --- limits --------------------------------------------------------------------------------


def limit_of(grant: Grant, product: Product | None) -> int | None:
    if grant.download_limit is not None:
        return grant.download_limit
    return product_settings(product, DownloadSettings).download_limit


def downloads_used(session: Session, grant_id: str) -> int:
    return session.exec(select(func.count()).select_from(Download).where(Download.grant_id == grant_id)).one()


def downloads_left(session: Session, grant: Grant, product: Product | None) -> int | None:
    limit = limit_of(grant, product)
    return None if limit is None else max(limit - downloads_used(session, grant.id), 0)


# --- links ---------------------------------------------------------------------------------


class UnknownFile(LookupError):
    pass


class LinkUnknown(LookupError):
    pass


class LinkExpired(Exception):
    pass


class AccessEnded(Exception):
    """The link's grant is not active: `on_hold` when suspended (it may come back)."""

    def __init__(self, reason: str, on_hold: bool) -> None:
        super().__init__(reason)
        self.reason, self.on_hold = reason, on_hold


class LimitReached(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"all {limit} downloads are used")
        self.limit = limit


def link_url(base_url: str, token: str) -> str:
    return f"{base_url}/downloads/{token}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_active(grant: Grant, now: datetime) -> None:
    view = GrantView(grant.id, grant.product_id, grant.status, as_utc(grant.ends_at))  # type: ignore[arg-type]
    if not is_active(view, now):
        raise AccessEnded(grant.reason if grant.status != "active" else (grant.ends_because or "access ended"),
                          on_hold=grant.status == "suspended")


def issue_link(session: Session, grant: Grant, file: ProductFile, *, purpose: str, now: datetime,
               lifetime: timedelta) -> tuple[str, DownloadLink]:
    """A new link to `file` for `grant`, valid for `lifetime`; returns its token (kept nowhere)."""
    token = secrets.token_urlsafe(32)
    link = DownloadLink(id=f"link_{uuid.uuid4().hex[:16]}", token_sha256=_hash(token), grant_id=grant.id,
                        customer_id=grant.customer_id, product_id=grant.product_id, file_id=file.id, purpose=purpose,
                        issued_at=now, expires_at=now + lifetime)
    session.add(link)
    return token, link


def link_for_library(session: Session, *, customer_id: str, grant_id: str, file_id: str, now: datetime,
                     lifetime: timedelta) -> str:
    """A click in the library: a fresh link for the customer's active grant, when downloads are left."""
    grant = session.get(Grant, grant_id)
    file = session.get(ProductFile, file_id)
    if grant is None or grant.customer_id != customer_id:
        raise LinkUnknown(grant_id)
    if file is None or file.product_id != grant.product_id or file.removed_at is not None:
        raise UnknownFile(file_id)
    _check_active(grant, now)
    left = downloads_left(session, grant, session.get(Product, grant.product_id))
    if left == 0:
        raise LimitReached(limit_of(grant, session.get(Product, grant.product_id)) or 0)
    token, _ = issue_link(session, grant, file, purpose="library", now=now, lifetime=lifetime)
    return token


@dataclass(frozen=True)
class Opened:
    file: ProductFile
    product_name: str
    downloads_left: int | None
    customer_id: str
    product_id: str


def open_link(session: Session, token: str, *, now: datetime, client: str | None = None) -> Opened:
    """A download through a link: refused when the link is unknown, its access ended or is on hold,
    it expired, or the grant's downloads are used up; otherwise counted. Runs inside the caller's
    transaction, which must commit before the file is sent."""
    link = session.exec(select(DownloadLink).where(DownloadLink.token_sha256 == _hash(token))).first()
    if link is None:
        raise LinkUnknown(token[:8])
    grant = session.get(Grant, link.grant_id, with_for_update=True)  # counts one download at a time
    file = session.get(ProductFile, link.file_id)
    if grant is None or file is None or file.removed_at is not None:
        raise LinkUnknown(link.id)
    _check_active(grant, now)
    if as_utc(link.expires_at) <= now:  # type: ignore[operator]
        raise LinkExpired(link.id)
    product = session.get(Product, grant.product_id)
    limit = limit_of(grant, product)
    used = downloads_used(session, grant.id)
    if limit is not None and used >= limit:
        raise LimitReached(limit)
    session.add(Download(id=f"dl_{uuid.uuid4().hex[:16]}", grant_id=grant.id, link_id=link.id, file_id=file.id,
                         customer_id=grant.customer_id, client=client, downloaded_at=now))
    return Opened(file, product.name if product else grant.product_name,
                  None if limit is None else limit - used - 1, grant.customer_id, grant.product_id)


@dataclass(frozen=True)
class LibraryFiles:
    grant: Grant
    files: list[ProductFile]
    downloads_left: int | None
    limit: int | None


def for_library(session: Session, product_id: str, grant: Grant) -> LibraryFiles:
    product = session.get(Product, product_id)
    return LibraryFiles(grant, live_files(session, product_id), downloads_left(session, grant, product),
                        limit_of(grant, product))
