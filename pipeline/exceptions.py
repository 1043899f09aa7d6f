"""The project's error root. Every error a user can see derives from RecordsError and
carries a one-line message without personal data."""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

ReasonT = TypeVar("ReasonT", bound=enum.StrEnum)


class RecordsError(Exception):
    """Root of every error raised by this project."""


class ConfigError(RecordsError):
    """A setting is missing or invalid."""


class BrokerError(RecordsError):
    """The local Kafka broker could not be installed, started or stopped."""


class KafkaClientError(RecordsError):
    """A Kafka client (admin, producer or consumer) operation failed; keeps librdkafka's
    error code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message if code is None else f"{message} [{code}]")
        self.code = code


class ClickHouseError(RecordsError):
    """A ClickHouse connection or query failed."""


class AccessError(RecordsError):
    """A user or credential of the embedded query endpoint is missing or invalid."""


class CheckFailed(RecordsError, Generic[ReasonT]):
    """A check refused its input: `reason`, a member of the check's reason enum whose value
    is the message, says which; `detail` adds context, never a value of the input."""

    def __init__(self, reason: ReasonT, detail: str = "") -> None:
        self.reason: ReasonT = reason
        super().__init__(reason.value + (f": {detail}" if detail else ""))
