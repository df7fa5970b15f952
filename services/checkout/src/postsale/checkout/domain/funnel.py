"""The upsell funnel after the first payment: an ordered list of steps, each an upsell offer
with an optional downsell shown when the buyer declines it. Pure navigation, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

MAX_STEPS = 10


@dataclass(frozen=True)
class FunnelStep:
    offer_id: str
    downsell_offer_id: str | None = None


@dataclass(frozen=True)
class Position:
    """Where the buyer is: step `step`, on its upsell or (after declining it) its downsell."""

    step: int
    downsell: bool = False


def start(steps: list[FunnelStep]) -> Position | None:
    return Position(0) if steps else None


def offer_at(steps: list[FunnelStep], position: Position) -> str:
    step = steps[position.step]
    return step.downsell_offer_id if position.downsell and step.downsell_offer_id else step.offer_id


def next_position(steps: list[FunnelStep], position: Position, *, accepted: bool) -> Position | None:
    """Accepting moves to the next step; declining an upsell shows its downsell if it has one,
    else moves on. None: the funnel is over."""
    if not accepted and not position.downsell and steps[position.step].downsell_offer_id:
        return Position(position.step, downsell=True)
    following = position.step + 1
    return Position(following) if following < len(steps) else None
