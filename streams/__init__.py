"""faust-streaming stage: raw events -> consent tracking, enrichment, enforcement ->
enriched topics in the row shape of their ClickHouse tables. See streams/README.md."""
