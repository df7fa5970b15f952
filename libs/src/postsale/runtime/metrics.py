"""Prometheus metrics every service exports on /metrics."""

from prometheus_client import Counter

OUTBOX_PUBLISHED = Counter("postsale_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
CONSUMED = Counter("postsale_events_consumed_total", "Events handled by a consumer", ["consumer", "event_type"])
DEAD_LETTERED = Counter("postsale_events_dead_lettered_total", "Records sent to a dead-letter topic", ["consumer"])
