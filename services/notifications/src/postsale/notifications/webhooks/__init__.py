"""Outgoing webhooks: Postsale's events delivered to the seller's endpoints, signed with the
Standard Webhooks scheme, retried for three days, in order per customer (docs/webhooks.md)."""
