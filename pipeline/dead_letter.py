"""The dead-letter contract: what a message in `cs.dlq.v1` (and `cs.quarantine.v1`)
carries. The original key and bytes are kept untouched; headers say why and where from.
Error texts must never contain personal data: pass the project's own error messages,
which name schemas and fields, not values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

H_ERROR = "dlq.error"
H_ERROR_CLASS = "dlq.error.class"
H_SOURCE_TOPIC = "dlq.source.topic"
H_SOURCE_PARTITION = "dlq.source.partition"
H_SOURCE_OFFSET = "dlq.source.offset"
H_STAGE = "dlq.stage"
H_FAILED_AT = "dlq.failed.at"

_MAX_ERROR_CHARS = 500


class KafkaMessageLike(Protocol):
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


@dataclass(frozen=True)
class DeadLetter:
    """Where a message came from and why it could not be processed."""

    source_topic: str
    partition: int
    offset: int
    error_class: str
    error: str
    stage: str

    @classmethod
    def of(cls, message: KafkaMessageLike, error: BaseException, stage: str) -> DeadLetter:
        """The dead letter of a consumed confluent-kafka message that failed with `error`."""
        return cls(
            source_topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            error_class=type(error).__name__,
            error=str(error),
            stage=stage,
        )

    def headers(self, original: Iterable[tuple[str, bytes | None]] = ()) -> list[tuple[str, bytes]]:
        """The original headers followed by the dead-letter headers."""
        out = [(k, v if v is not None else b"") for k, v in original if not k.startswith("dlq.")]
        out += [
            (H_ERROR, self.error[:_MAX_ERROR_CHARS].encode()),
            (H_ERROR_CLASS, self.error_class.encode()),
            (H_SOURCE_TOPIC, self.source_topic.encode()),
            (H_SOURCE_PARTITION, str(self.partition).encode()),
            (H_SOURCE_OFFSET, str(self.offset).encode()),
            (H_STAGE, self.stage.encode()),
            (H_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]
        return out


def parse_headers(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None) -> dict[str, str]:
    """The dead-letter headers of a consumed message, decoded (for tests, reports, replays)."""
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (v or b"").decode("utf-8", "replace") for k, v in items if k.startswith("dlq.")}
