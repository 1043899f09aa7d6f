"""`with` support for the Kafka client wrappers: leaving the block calls `close()`, however
the block ends (quix-streams' wrappers flush and close in `__exit__` the same way)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosedOnExit:
    """A client that is closed when its `with` block ends; subclasses define `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
