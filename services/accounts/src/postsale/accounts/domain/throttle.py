"""Throttling of login, code and link requests: a number of attempts free within a window, then a
delay that doubles with each further attempt, up to a cap. Keyed alike for every email, whether an
account has it or not, so the answers never tell which emails have accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from postsale.runtime.clock import as_utc


@dataclass(frozen=True)
class Policy:
    name: str
    free: int  # attempts within `window` before delays start
    window: timedelta
    first_delay: timedelta
    max_delay: timedelta

    def key(self, subject: str) -> str:
        return f"{self.name}:{subject}"[:300]

    def delay_after(self, hits: int) -> timedelta | None:
        """How long to wait after the `hits`-th attempt of a window; None while attempts are free."""
        excess = hits - self.free
        if excess <= 0:
            return None
        return min(self.first_delay * 2 ** min(excess - 1, 30), self.max_delay)


MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
# Wrong passwords and codes, per email typed and per client address (an office shares one).
FAILED_LOGIN_PER_ACCOUNT = Policy("login-account", free=5, window=15 * MINUTE, first_delay=2 * SECOND,
                                  max_delay=15 * MINUTE)
FAILED_LOGIN_PER_ADDRESS = Policy("login-address", free=30, window=15 * MINUTE, first_delay=2 * SECOND,
                                  max_delay=15 * MINUTE)
# Emails asked for (login links and codes, password resets), per email and per client address.
EMAILS_PER_ACCOUNT = Policy("email-account", free=3, window=15 * MINUTE, first_delay=30 * SECOND,
                            max_delay=60 * MINUTE)
EMAILS_PER_ADDRESS = Policy("email-address", free=20, window=15 * MINUTE, first_delay=30 * SECOND,
                            max_delay=60 * MINUTE)


@dataclass
class State:
    hits: int
    window_started_at: datetime
    blocked_until: datetime | None


def wait(state: State | None, now: datetime) -> timedelta | None:
    """How long the subject must still wait before its next attempt is heard; None: not at all."""
    if state is None or state.blocked_until is None:
        return None
    left = as_utc(state.blocked_until) - now
    return left if left > timedelta(0) else None


def after_attempt(policy: Policy, state: State | None, now: datetime) -> State:
    """The state after one more attempt at `now` (a failure, or a request that counts)."""
    if state is None or now - as_utc(state.window_started_at) > policy.window:
        state = State(hits=0, window_started_at=now, blocked_until=None)
    hits = state.hits + 1
    delay = policy.delay_after(hits)
    return State(hits=hits, window_started_at=as_utc(state.window_started_at),
                 blocked_until=now + delay if delay else None)


def seconds(delay: timedelta) -> int:
    return max(1, int(delay.total_seconds() + 0.999))
