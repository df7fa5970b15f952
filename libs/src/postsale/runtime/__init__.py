"""Shared runtime of the Postsale services."""
