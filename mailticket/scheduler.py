"""APScheduler wiring: the periodic jobs, coalesced and never overlapping, each run once per period across instances."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from mailticket.clock import utcnow
from mailticket.config import MailboxSettings, Settings
from mailticket.db.store import Store
from mailticket.service import leases

log = logging.getLogger(__name__)

# A mailbox lease outlives a stalled poller by this much before another instance takes the mailbox over.
MAILBOX_LEASE_TTL = 120.0
# A period lease ends this much before the next period, so that clock jitter never skips a run.
PERIOD_SLACK = 0.9


class Stopping(Exception):
    """Raised between batches when the daemon shuts down."""


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Jobs:
    """The daemon's periodic work; every method is safe to run on several instances at once."""

    def __init__(self, settings: Settings, store: Store, holder: str | None = None) -> None:
        self.settings, self.store = settings, store
        self.holder = holder or instance_id()
        self.stopping = threading.Event()

    def _lease(self, name: str, ttl: float) -> bool:
        with self.store.transaction() as session:
            return leases.acquire(session, name, self.holder, ttl, utcnow())

    def _once_per_period(self, name: str, interval: float, work: Callable[[], object]) -> None:
        """Runs `work` only on the instance that takes this period's lease; the lease is not given back."""
        if self._lease(f"job:{name}", interval * PERIOD_SLACK):
            work()

    def poll(self) -> None:
        for box in self.settings.mailboxes:
            if self.stopping.is_set():
                return
            self.poll_one(box)

    def poll_one(self, box: MailboxSettings) -> None:
        from mailticket.service.poll import poll_mailbox

        name = f"mailbox:{box.name}"
        if not self._lease(name, MAILBOX_LEASE_TTL):
            return  # another instance polls this mailbox now

        def between_batches() -> None:
            if self.stopping.is_set():
                raise Stopping()
            if not self._lease(name, MAILBOX_LEASE_TTL):
                raise Stopping()  # the lease was taken over: the other instance goes on from our watermark

        try:
            poll_mailbox(self.store, self.settings, box, between_batches=between_batches)
        except Stopping:
            log.info("mailbox %s: stopped between batches", box.name)
        except Exception:  # noqa: BLE001 - one failing mailbox must not stop the others or the scheduler
            log.exception("mailbox %s: poll failed", box.name)
        finally:
            with self.store.transaction() as session:
                leases.release(session, name, self.holder)

    def outbox(self) -> None:
        from mailticket.service.outbox import flush_sync

        try:
            flush_sync(self.store, self.settings, stopping=self.stopping.is_set)
        except Exception:  # noqa: BLE001 - logged; the rows stay queued for the next run
            log.exception("outbox flush failed")

    def expire_claims(self) -> None:
        from mailticket.service.claims import expire_claims

        def work() -> None:
            with self.store.transaction() as session:
                expired = expire_claims(session)
            if expired:
                log.info("expired %d claim(s)", expired)

        self._once_per_period("claim-expiry", self.settings.scheduler.claim_expiry_interval, work)


def build_scheduler(jobs: Jobs) -> BackgroundScheduler:
    """One thread per job at most (max_instances=1), missed runs coalesced into one."""
    every = jobs.settings.scheduler
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                                   "misfire_grace_time": None})
    now = utcnow()
    scheduler.add_job(jobs.poll, "interval", seconds=every.poll_interval, id="poll", next_run_time=now)
    scheduler.add_job(jobs.outbox, "interval", seconds=every.outbox_interval, id="outbox", next_run_time=now)
    scheduler.add_job(jobs.expire_claims, "interval", seconds=every.claim_expiry_interval, id="claim-expiry",
                      next_run_time=now)
    return scheduler
