"""The sink consumer's fetch-ahead follows the batch bound (`records worker sink
--batch-max-mb`), so a smaller bound lowers what librdkafka holds as well."""

from __future__ import annotations

from sink.sink_options import SinkOptions

MB = 1024 * 1024


def fetch_sizes(options: SinkOptions) -> tuple[int, int, int]:
    settings = options.consumer_settings()
    return (
        int(settings["fetch.max.bytes"]),
        int(settings["max.partition.fetch.bytes"]),
        int(settings["queued.max.messages.kbytes"]) * 1024,
    )


def test_the_default_batch_bound_keeps_librdkafkas_default_queue_and_large_fetches() -> None:
    assert SinkOptions().batch_max_bytes == 64 * MB
    assert fetch_sizes(SinkOptions()) == (64 * MB, 8 * MB, 64 * MB)


def test_a_smaller_batch_bound_shrinks_the_fetches_and_the_local_queue_with_it() -> None:
    assert fetch_sizes(SinkOptions(batch_max_bytes=16 * MB)) == (16 * MB, 8 * MB, 16 * MB)
    assert fetch_sizes(SinkOptions(batch_max_bytes=4 * MB)) == (4 * MB, 4 * MB, 4 * MB)


def test_the_fetch_sizes_stay_within_what_librdkafka_accepts() -> None:
    # a fetch must hold a whole message of up to message.max.bytes (1,000,000 by default)
    assert fetch_sizes(SinkOptions(batch_max_bytes=1)) == (MB, MB, MB)
    # larger batches fill from a 64 MB queue: fetching more ahead buys nothing
    assert fetch_sizes(SinkOptions(batch_max_bytes=512 * MB)) == (64 * MB, 8 * MB, 64 * MB)
