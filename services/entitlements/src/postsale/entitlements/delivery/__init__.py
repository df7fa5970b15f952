"""One delivery strategy per delivery type, registered by type (see `base.py` for what a strategy
is and `runner.py` for when it runs). Adding a type is adding a module here and a line below."""

from __future__ import annotations

from postsale.entitlements.delivery.base import DeliveryStrategy
from postsale.entitlements.delivery.download import DownloadStrategy
from postsale.entitlements.delivery.integration import IntegrationStrategy
from postsale.entitlements.delivery.license_key import LicenseKeyStrategy
from postsale.entitlements.delivery.membership import MembershipStrategy
from postsale.entitlements.delivery.none import FulfilmentStrategy

STRATEGIES: dict[str, DeliveryStrategy] = {
    strategy.delivery_type: strategy
    for strategy in (MembershipStrategy(), IntegrationStrategy(), DownloadStrategy(), LicenseKeyStrategy(),
                     FulfilmentStrategy())
}
DELIVERY_TYPES: tuple[str, ...] = tuple(STRATEGIES)


class UnknownDeliveryType(LookupError):
    pass


def strategy_for(delivery_type: str) -> DeliveryStrategy:
    try:
        return STRATEGIES[delivery_type]
    except KeyError:
        raise UnknownDeliveryType(delivery_type) from None
