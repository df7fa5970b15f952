"""The emails of entitlements' deliveries: the download link of a file product, the license key of
a software product, and the seller's notice when a call to a third-party platform failed for the last time. Each use case runs inside
the caller's transaction and never commits; every email is keyed, so a redelivery sends nothing twice."""

from __future__ import annotations

from sqlmodel import Session

from postsale.contracts import DownloadLinkIssued, IntegrationCallFailed, LicenseKeyIssued
from postsale.notifications.emails import queue_email, queue_for_sellers
from postsale.runtime.settings import PublicUrls, from_environment


def queue_download_link_email(session: Session, event: DownloadLinkIssued, _event_id: str) -> None:
    """Started by `DownloadLinkIssued`: "Your download", with the link, until when it works and the
    library, where every click makes a fresh link. One email per link."""
    queue_email(session, key=f"download-link:{event.link_id}", template="download_link", to=event.email,
                customer_id=event.customer_id, link=event, library_url=from_environment(PublicUrls).library_url)


def queue_license_key_email(session: Session, event: LicenseKeyIssued, _event_id: str) -> None:
    """Started by `LicenseKeyIssued`: "Your license key", with the key, how many activations it allows,
    until when it works and the library, which shows it too. One email per key."""
    queue_email(session, key=f"license-key:{event.license_id}", template="license_key", to=event.email,
                customer_id=event.customer_id, license=event, library_url=from_environment(PublicUrls).library_url)


def notify_sellers_of_failed_call(session: Session, event: IntegrationCallFailed, _event_id: str) -> None:
    """Started by `IntegrationCallFailed`: when no retry is left (`next_retry_at` empty), the seller
    learns that the customer's access on the platform was not granted (or revoked). Earlier
    attempts are retried by entitlements and send nothing."""
    if event.next_retry_at is not None:
        return
    queue_for_sellers(session, key=f"seller-integration-failed:{event.call_id}", template="seller_integration_failed",
                      call=event, deliveries_url=f"{from_environment(PublicUrls).entitlements_url}/admin/products/"
                                                 f"{event.product_id}/deliveries")
