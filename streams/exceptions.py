"""Errors of the streams stage; all derive from the project's RecordsError."""

from __future__ import annotations

from pipeline.exceptions import RecordsError


class InvalidEvent(RecordsError):
    """A decoded event that cannot be processed (wrong type for its topic, impossible
    values). Names the schema and field, never a value; the event goes to the DLQ."""
