"""Password guessing against the embedded query endpoint, slowed down per user name.

The endpoint's personal users have passwords people chose (pipeline/access_users.py);
scrypt makes one guess cost ~0.1 s of CPU, but a local attacker can send guesses in
parallel. `LoginThrottle` counts consecutive failed logins per user name:
- after `max_failures` failures in a row, the name is locked for `lockout_s`; each
  further lockout of the same name doubles it, up to `max_lockout_s`;
- while a name is locked, every login under it is refused without checking the password,
  so a right guess during a lockout teaches the attacker nothing;
- a successful login ends the name's count; a name whose last failure is older than
  `forget_after_s` starts afresh.
Unknown names are counted like known ones (the answer must not tell which names exist).
At most `max_names` names are tracked (the oldest are dropped first), so a flood of
made-up names cannot grow memory. The owner credential is not throttled by the caller:
it is 256 random bits (nothing to guess), and locking it would let any local process
stop `records sql` and the report.

The cost of the design: anyone on the machine can lock a known user name for a while
by failing on purpose. For a 127.0.0.1 endpoint that trade is the usual one (a server
with users does the same); the lockout is logged and the DPO sees the refusals in the
access log. The state is per process: a restart of the sink forgets it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int = 0
    lockouts: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Failed-login counting per user name; thread-safe (the endpoint serves requests in threads)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        forget_after_s: float = 3600.0,
        max_names: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or lockout_s <= 0 or max_lockout_s < lockout_s or max_names < 1:
            raise ValueError("login throttle: max_failures >= 1, 0 < lockout_s <= max_lockout_s, max_names >= 1")
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_after_s = forget_after_s
        self.max_names = max_names
        self._clock = clock
        self._lock = threading.Lock()
        self._names: OrderedDict[str, _Failures] = OrderedDict()

    def locked_for(self, name: str) -> float:
        """Seconds until `name` may try again; 0 when it may try now."""
        with self._lock:
            entry = self._names.get(name)
            if entry is None:
                return 0.0
            return max(0.0, entry.locked_until - self._clock())

    def failed(self, name: str) -> float:
        """Counts a failed login of `name`; the lockout it starts (seconds), or 0."""
        now = self._clock()
        with self._lock:
            entry = self._names.pop(name, None)
            if entry is None or now - entry.last_failure > self.forget_after_s:
                entry = _Failures()
            entry.count += 1
            entry.last_failure = now
            lockout = 0.0
            if entry.count >= self.max_failures:
                lockout = min(self.max_lockout_s, self.lockout_s * 2**entry.lockouts)
                entry.lockouts += 1
                entry.count = 0
                entry.locked_until = now + lockout
            self._names[name] = entry
            while len(self._names) > self.max_names:
                self._names.popitem(last=False)
            return lockout

    def succeeded(self, name: str) -> None:
        """A right password for `name`: its failures are forgotten."""
        with self._lock:
            self._names.pop(name, None)
