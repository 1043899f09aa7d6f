"""The streams worker's faust Worker keeps the root logger at the level asked for, so
libraries' debug calls (aiokafka logs one per message sent) cost no LogRecord."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from streams.worker_process import FaustWorker


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(("asked", "expected"), [("warning", logging.WARNING), ("info", logging.INFO)])
def test_the_root_logger_ends_at_the_level_asked_for(restore_logging: None, asked: str, expected: int) -> None:
    app = faust.App("test-logging", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = FaustWorker(app, loglevel=asked, quiet=True, redirect_stdouts=False)
    worker._setup_logging()
    assert logging.getLogger().level == expected
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
