"""Errors of the retention jobs; one line each, never personal data."""

from __future__ import annotations

from pipeline.exceptions import RecordsError


class RetentionError(RecordsError):
    """Root of the retention jobs' errors."""


class RetentionViolation(RetentionError):
    """Rows older than their policy limit are still stored after enforcement."""


class TopicsOutOfPolicy(RetentionError):
    """A Kafka topic drifted from its specification or can keep erased data too long."""


class CommitmentsFailed(RetentionError):
    """The compliance report found at least one commitment without passing evidence."""


class ReconciliationFailed(RetentionError):
    """A raw event of the window is in no outcome, or in two where one is expected."""
