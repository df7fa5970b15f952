"""Prometheus metrics every service exports on /metrics."""

from prometheus_client import Counter, Gauge

OUTBOX_PUBLISHED = Counter("postsale_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
OUTBOX_PARKED_TOTAL = Counter("postsale_outbox_parked_total",
                              "Outbox rows parked because the broker refused them for a reason retrying cannot fix",
                              ["topic"])
OUTBOX_BACKLOG = Gauge("postsale_outbox_backlog", "Outbox rows waiting to be published (neither sent nor parked)")
OUTBOX_OLDEST_AGE = Gauge("postsale_outbox_oldest_unsent_age_seconds",
                          "Age of the oldest outbox row waiting to be published; 0 when none waits")
OUTBOX_PARKED = Gauge("postsale_outbox_parked_rows", "Outbox rows parked, waiting for an operator to release them")
CONSUMED = Counter("postsale_events_consumed_total", "Events handled by a consumer", ["consumer", "event_type"])
DEAD_LETTERED = Counter("postsale_events_dead_lettered_total", "Records sent to a dead-letter topic", ["consumer"])
CONSUMER_LAG = Gauge("postsale_consumer_lag",
                     "Records not yet handled: the partition's end offset minus the group's committed offset",
                     ["group", "topic", "partition"])
