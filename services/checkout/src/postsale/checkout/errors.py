"""What checkout refuses, with a message for the person who asked."""


class CheckoutError(ValueError):
    """A request checkout refuses, with a message for the person who made it."""


class PaymentMismatch(CheckoutError):
    """The provider took a payment that is not what its attempt charges (the buyer paid an intent
    made before they changed the order, or in another currency): it completes nothing, and goes back."""
