"""Prometheus metrics for `GET /metrics`: counters the daemon's jobs feed, gauges read from the database at scrape."""

# The counters and the histogram live once per process (one process is one daemon) and are registered in no global
# registry: each app builds its own CollectorRegistry around them, so that tests may create many apps. The gauges
# are not kept in memory at all: they are one query per scrape, so that every instance of a cluster reports the
# same, true figures, whichever instance did the work.

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from mailticket.db.models import OPEN, PENDING, QUEUED, SENDING, Outbox, Ticket
from mailticket.config import Settings
from mailticket.db.store import Store
from mailticket.service import mailboxes
from mailticket.service.intake import PollCounts
from mailticket.service.outbox import SendCounts

log = logging.getLogger(__name__)

# The text exposition format every Prometheus version reads; newer clients default to 1.0.0.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A pass over an idle mailbox takes well under a second; a backlog of thousands, minutes.
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CLAIM_HELD, CLAIM_LOST = "held", "lost"

MESSAGES_INGESTED = Counter(
    "mailticket_messages_ingested", "Inbound messages stored, by mailbox and by whether they opened a ticket "
    "(created) or joined one (appended).", ["mailbox", "result"], registry=None)
MESSAGES_QUARANTINED = Counter(
    "mailticket_messages_quarantined", "Inbound messages that could not be ingested and were quarantined.",
    ["mailbox"], registry=None)
POLL_DURATION = Histogram(
    "mailticket_poll_duration_seconds", "Time one polling pass over a mailbox took, failed passes included.",
    ["mailbox"], buckets=POLL_BUCKETS, registry=None)
POLL_ERRORS = Counter("mailticket_poll_errors", "Polling passes that failed (the mailbox or the database).",
                      ["mailbox"], registry=None)
CLAIM_CONFLICTS = Counter(
    "mailticket_claim_conflicts", "Claims refused because another operator held the ticket (held), and replies "
    "or renewals refused because the operator's claim had been lost (lost).", ["kind"], registry=None)
OUTBOX_MESSAGES = Counter(
    "mailticket_outbox_messages", "Outbox rows handled by this instance, by outcome: sent, retried later, failed "
    "for good.", ["outcome"], registry=None)
SMTP_FAILURES = Counter(
    "mailticket_smtp_failures", "Outbox sends that did not go through: temporary and permanent refusals, an "
    "unreachable relay, and rows handed back unsent once the relay was found unavailable.", registry=None)
# Series that exist from the start read as 0 rather than as missing, so that rate() and alerts see the first one.
for _kind in (CLAIM_HELD, CLAIM_LOST):
    CLAIM_CONFLICTS.labels(_kind)
for _outcome in ("sent", "retried", "failed"):
    OUTBOX_MESSAGES.labels(_outcome)
# The extra `*_created` series of each counter only double the output; nothing here reads them.
disable_created_metrics()
PROCESS_METRICS = (MESSAGES_INGESTED, MESSAGES_QUARANTINED, POLL_DURATION, POLL_ERRORS, CLAIM_CONFLICTS,
                   OUTBOX_MESSAGES, SMTP_FAILURES)

_UNRESOLVED = (OPEN, PENDING)
_count = func.count()
# One statement, one round trip; each count is served by an index on status.
SCRAPE = select(
    select(_count).where(Ticket.status == OPEN).scalar_subquery().label("open"),
    select(_count).where(Ticket.status == PENDING).scalar_subquery().label("pending"),
    select(_count).where(Outbox.status.in_((QUEUED, SENDING))).scalar_subquery().label("outbox"),
    select(_count).where(Ticket.status.in_(_UNRESOLVED), Ticket.first_response_breached.is_(True))
    .scalar_subquery().label("first_response_breached"),
    select(_count).where(Ticket.status.in_(_UNRESOLVED), Ticket.resolution_breached.is_(True))
    .scalar_subquery().label("resolution_breached"),
)


# --- hooks: one call each where the work happens -------------------------------------------------------------

def record_poll(mailbox: str, counts: PollCounts) -> None:
    """After a polling pass that completed."""
    MESSAGES_INGESTED.labels(mailbox, "created").inc(counts.created)
    MESSAGES_INGESTED.labels(mailbox, "appended").inc(counts.appended)
    MESSAGES_QUARANTINED.labels(mailbox).inc(counts.quarantined)


def record_outbox(counts: SendCounts) -> None:
    """After an outbox pass."""
    for outcome in ("sent", "retried", "failed"):
        OUTBOX_MESSAGES.labels(outcome).inc(getattr(counts, outcome))
    SMTP_FAILURES.inc(counts.retried + counts.failed)


def claim_conflict(kind: str = CLAIM_HELD) -> None:
    """A claim refused (held by someone else), or a reply refused because its claim was lost."""
    CLAIM_CONFLICTS.labels(kind).inc()


# --- the registry and the scrape ----------------------------------------------------------------------------

class DatabaseGauges(Collector):
    """Gauges computed at scrape time from the shared database; a database that does not answer reads as down."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store, self.settings = store, settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("mailticket_database_up", "1 when the database answered the scrape's query.")
        try:
            with self.store.reading() as session:
                row = session.execute(SCRAPE).one()
        except Exception:  # noqa: BLE001 - a scrape must still answer, saying the database is down
            log.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        auth = None
        if self.settings is not None and self.settings.mailboxes:
            auth = GaugeMetricFamily("mailticket_mailbox_auth_ok", "1 while the mailbox can log in; 0 when it needs "
                                     "authorizing again (OAuth2) or its login was refused.", labels=["mailbox"])
            try:
                for health in mailboxes.health(self.store, self.settings):
                    auth.add_metric([health.mailbox], int(health.auth_ok))
            except Exception:  # noqa: BLE001 - the other figures still answer
                log.warning("metrics: the mailboxes' state could not be read", exc_info=True)
                auth = None
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("mailticket_tickets_open", "Tickets waiting for an operator (status open).",
                                value=row.open)
        yield GaugeMetricFamily("mailticket_tickets_pending", "Tickets waiting for the customer (status pending).",
                                value=row.pending)
        yield GaugeMetricFamily("mailticket_outbox_depth", "Outbound mail not yet sent (queued or being sent).",
                                value=row.outbox)
        breached = GaugeMetricFamily("mailticket_sla_breached_tickets",
                                     "Unresolved tickets past an SLA deadline, by target.", labels=["target"])
        breached.add_metric(["first_response"], row.first_response_breached)
        breached.add_metric(["resolution"], row.resolution_breached)
        yield breached
        if auth is not None:
            yield auth


def build_registry(store: Store, settings: Settings | None = None) -> CollectorRegistry:
    """A registry for one app: this process's counters, the database gauges, and the process's own figures."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in PROCESS_METRICS:
        registry.register(metric)
    registry.register(DatabaseGauges(store, settings))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
