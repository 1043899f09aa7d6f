"""Thin wrappers around confluent-kafka clients: configuration built up front, the client
created on first use, errors turned into the project's own with their Kafka error code."""
