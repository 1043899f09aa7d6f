"""What the event builders (chats, calls, contact forms) borrow from the running simulation
(records/simulate/events.py): its random generator, traffic mix and world, and the helpers
that draw ids, envelopes, people and versions from them."""

from __future__ import annotations

import random
from typing import Any, Protocol

from records.simulate.model import TrafficMix
from records.simulate.population import Person, World


class SimulationContext(Protocol):
    rng: random.Random
    mix: TrafficMix
    world: World
    chat_defaults: dict[str, Any]  # the chat schema's scalar defaults (what a channel does not fill)
    recorded: float  # the probability that an answered inbound call is recorded

    def uuid(self) -> str: ...

    def envelope(self, event_time: int, source: str, lag_ms: tuple[int, int] = ...) -> dict[str, Any]: ...

    def person(self, pool: list[Person] | None = None) -> Person: ...

    def user_agent(self, device: int) -> str: ...

    def versioned(self, at: int, versions: tuple[str, ...]) -> str: ...

    def between(self, low: int, high: int) -> int: ...
