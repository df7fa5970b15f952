"""What checkout refuses, with a message for the person who asked."""


class CheckoutError(ValueError):
    """A request checkout refuses, with a message for the person who made it."""
