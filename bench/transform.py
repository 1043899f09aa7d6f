"""The work one raw message costs in the yardsticks, the same in the plain loop
(bench/plain_loop.py) and in the Quix Streams peer (bench/quix_peer.py).

Decode (fastavro), then either re-encode the record unchanged (`enrich=False`, the bare
loop) or run the project's enrichment and enforcement (`streams.rows.RowBuilder`, the
consent state in a dict, the erased-keys table looked up as the streams stage does) and
encode every row. A message that cannot be decoded or built is passed on as it came, as
the streams stage dead-letters it. Imports only what the project's pure core needs
(fastavro, phonenumbers, ua-parser, publicsuffixlist), so it also runs in the peer's
own virtualenv.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pipeline.policy import default_policy
from pipeline.serde import AvroDeserializer, AvroSerializer, SerdeError
from pipeline.subject_keys import SubjectKeyer
from streams.consent_state import EMPTY, SubjectConsent, apply, merge
from streams.rows import RowBuilder

# One message to produce: key, value (None: a tombstone), headers.
Output = tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]] | None]
# The same on the topic the streams stage writes it to (`records bench --only sink`'s backlog).
Routed = tuple[str, bytes | None, bytes | None, list[tuple[str, str | bytes | None]] | None]


class RawTransform:
    """`transform(key, value, now)` -> the messages a raw message becomes."""

    def __init__(self, keyer: SubjectKeyer, *, enrich: bool) -> None:
        self.enrich = enrich
        self.decode = AvroDeserializer()
        self.builder = RowBuilder(keyer, default_policy())
        self.consent: dict[str, SubjectConsent] = {}
        self.erased: dict[str, int] = {}  # the erased-keys table (empty here, looked up as streams does)
        self._serializers: dict[str, AvroSerializer] = {}

    def consent_of(self, keys: Sequence[str]) -> SubjectConsent:
        return merge(self.consent.get(k, EMPTY) for k in keys)

    def encode(self, schema: str, value: dict[str, object]) -> bytes:
        serializer = self._serializers.get(schema)
        if serializer is None:
            serializer = self._serializers[schema] = AvroSerializer(schema)
        return serializer(value)

    def __call__(self, key: bytes | None, value: bytes | None, now: datetime) -> list[Output]:
        try:
            decoded = self.decode(value)
        except SerdeError:
            return [(key, value, None)]
        if not self.enrich:
            return [(key, self.encode(decoded.schema_name, decoded.value), None)]
        routed = self._enriched(decoded.schema_name, decoded.value, now)
        if routed is None:
            return [(key, value, None)]
        return [(k, v, h) for _, k, v, h in routed]

    def routed(self, value: bytes | None, now: datetime) -> list[Routed]:
        """The enriched messages a raw message becomes, each with its topic; none for a
        message the streams stage would dead-letter or quarantine."""
        try:
            decoded = self.decode(value)
        except SerdeError:
            return []
        return self._enriched(decoded.schema_name, decoded.value, now) or []

    def _enriched(self, schema: str, record: dict[str, object], now: datetime) -> list[Routed] | None:
        """Enrichment and enforcement of one decoded event; None when it fails."""
        try:
            keys, moment = self.builder.erasure_scope(schema, record)
            if any(self.erased.get(k, -1) >= moment for k in keys):
                return []
            outcome = self.builder.build(schema, record, self.consent_of, now)
        except Exception:
            return None
        for subject, change in outcome.consent_changes:
            self.consent[subject] = apply(self.consent.get(subject, EMPTY), change)
        return [
            (
                row.topic,
                row.key.encode(),
                None if row.value is None or row.schema is None else self.encode(row.schema, row.value),
                [(name, header) for name, header in row.headers],
            )
            for row in outcome.rows
        ]
