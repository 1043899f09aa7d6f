"""Errors of the sink; one line each, never personal data."""

from __future__ import annotations

from pipeline.exceptions import RecordsError


class SinkError(RecordsError):
    """Root of the sink's errors."""


class KafkaSinkError(SinkError):
    """A Kafka call of the sink failed; keeps librdkafka's error code name."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message if code is None else f"{message} [{code}]")
        self.code = code


class WriteFailed(SinkError):
    """Writing a batch to ClickHouse failed; the batch is retried, its offsets not committed."""
