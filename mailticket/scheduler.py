"""APScheduler wiring: the periodic jobs, coalesced and never overlapping, each run once per period across instances;
and an IMAP IDLE watcher per mailbox that polls as soon as mail arrives."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.background import BackgroundScheduler

from mailticket import imap, metrics
from mailticket.clock import utcnow
from mailticket.config import MailboxSettings, Settings
from mailticket.db.store import Store
from mailticket.service import auth_notice, leases, mailboxes
from mailticket.service.poll import Stopping
from mailticket.service.tokens import TokenError

log = logging.getLogger(__name__)

# A mailbox lease outlives a stalled poller by this much before another instance takes the mailbox over.
# The environment variable exists for the cluster test, which kills a poller and cannot wait two minutes.
MAILBOX_LEASE_TTL = float(os.environ.get("MAILTICKET_MAILBOX_LEASE_TTL", "120"))
# RFC 2177: a server may log out a client idle for 30 minutes, so IDLE is ended and issued again before that.
IDLE_RENEW_SECONDS = 24 * 60.0
# A lost IDLE connection is opened again after 1 s, 2 s, 4 s ... at most a minute; polling covers the gap.
IDLE_RECONNECT_FIRST = 1.0
IDLE_RECONNECT_MAX = 60.0
# At shutdown a watcher leaves IDLE within imap.IDLE_TICK; a poll it started ends between batches.
IDLE_JOIN_SECONDS = 5.0
# A period lease ends this much before the next period, so that clock jitter never skips a run.
PERIOD_SLACK = 0.9


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Jobs:
    """The daemon's periodic work; every method is safe to run on several instances at once."""

    def __init__(self, settings: Settings, store: Store, holder: str | None = None) -> None:
        self.settings, self.store = settings, store
        self.holder = holder or instance_id()
        self.stopping = threading.Event()
        # One pass per mailbox at a time in this process: the lease below is re-entrant for its holder, so the
        # scheduled poll and the IDLE watcher of one instance would otherwise poll the same mailbox together.
        self._polling = {box.name: threading.Lock() for box in settings.mailboxes}
        self._watchers: list[threading.Thread] = []

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
        try:
            auth_notice.send_due(self.store, self.settings, utcnow())
        except Exception:  # noqa: BLE001 - the notice is tried again after the next poll
            log.exception("telling the admins about a lost authorization failed")

    def poll_one(self, box: MailboxSettings, *, wait: bool = False) -> None:
        """One pass over the mailbox unless another holds it; `wait` (the IDLE watcher) waits for a pass of this
        process to end and then polls again, since that pass may have listed the mailbox before the new mail."""
        lock = self._polling.setdefault(box.name, threading.Lock())
        if not lock.acquire(blocking=wait):
            return  # this process polls the mailbox at this moment
        try:
            if not self.stopping.is_set():
                self._poll_leased(box)
        finally:
            lock.release()

    def _poll_leased(self, box: MailboxSettings) -> None:
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
            with metrics.POLL_DURATION.labels(box.name).time():  # metrics hook
                counts = poll_mailbox(self.store, self.settings, box, between_batches=between_batches)
            metrics.record_poll(box.name, counts)  # metrics hook
        except Stopping:
            log.info("mailbox %s: stopped between batches", box.name)
        except (imap.MailboxError, TokenError) as exc:  # said in words already: no traceback
            metrics.POLL_ERRORS.labels(box.name).inc()  # metrics hook
            log.error("mailbox %s: poll failed: %s", box.name, exc)
        except Exception:  # noqa: BLE001 - one failing mailbox must not stop the others or the scheduler
            metrics.POLL_ERRORS.labels(box.name).inc()  # metrics hook
            log.exception("mailbox %s: poll failed", box.name)
        finally:
            with self.store.transaction() as session:
                leases.release(session, name, self.holder)

    def outbox(self) -> None:
        from mailticket.service.outbox import flush_sync

        try:
            metrics.record_outbox(flush_sync(self.store, self.settings, stopping=self.stopping.is_set))  # metrics hook
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

    def sla(self) -> None:
        """Marks SLA breaches and escalates them; a full pass is followed by another, each committed."""
        from mailticket.db.store import db_now
        from mailticket.service.sla import CHECK_LIMIT, check

        def work() -> None:
            checked = CHECK_LIMIT
            while checked == CHECK_LIMIT and not self.stopping.is_set():
                try:
                    with self.store.transaction() as session:
                        checked = check(session, self.settings, db_now(session))
                except Exception:  # noqa: BLE001 - logged; the tickets stay due for the next period
                    log.exception("SLA check failed")
                    return

        self._once_per_period("sla", self.settings.scheduler.sla_interval, work)

    # --- IMAP IDLE -----------------------------------------------------------------------------------------

    def start_watchers(self) -> None:
        """One IDLE watcher thread per mailbox; each ends by itself on a server without IDLE."""
        for box in self.settings.mailboxes:
            thread = threading.Thread(target=self.watch, args=(box,), name=f"idle-{box.name}", daemon=True)
            self._watchers.append(thread)
            thread.start()

    def join_watchers(self, timeout: float = IDLE_JOIN_SECONDS) -> None:
        self.stopping.set()
        for thread in self._watchers:
            thread.join(timeout)

    def watch(self, box: MailboxSettings) -> None:
        """Waits in IDLE on a connection of its own and polls as soon as the server announces mail; reconnects
        with backoff when the connection is lost. Polling on the schedule goes on regardless, as the fallback."""
        delay, told = IDLE_RECONNECT_FIRST, False
        while not self.stopping.is_set():
            try:
                with imap.MailboxConnection(box, access_token=mailboxes.token_source(self.store, self.settings,
                                                                                    box)) as conn:
                    if not conn.supports_idle():
                        log.info("mailbox %s: the server offers no IDLE; polling every %g s", box.name,
                                 self.settings.scheduler.poll_interval)
                        return
                    conn.examine()
                    delay, told = IDLE_RECONNECT_FIRST, False
                    log.info("mailbox %s: waiting for new mail (IMAP IDLE)", box.name)
                    # Mail may have come while there was no watcher (at start, or while reconnecting).
                    arrived = True
                    while not self.stopping.is_set():
                        if arrived:
                            self.poll_one(box, wait=True)
                        arrived = conn.idle_wait(IDLE_RENEW_SECONDS, interrupted=self.stopping.is_set)
                return
            except TokenError as exc:
                if not told:  # said once; the polls say the rest
                    log.warning("mailbox %s: IDLE watcher: %s", box.name, exc)
                told, delay = True, IDLE_RECONNECT_MAX
            except imap.MailboxError as exc:
                log.warning("mailbox %s: IDLE watcher: %s; connecting again in %g s", box.name, exc, delay)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure; polling covers the gap
                log.exception("mailbox %s: IDLE watcher failed; connecting again in %g s", box.name, delay)
            if self.stopping.wait(delay):
                return
            delay = min(IDLE_RECONNECT_MAX, delay * 2)


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
    scheduler.add_job(jobs.sla, "interval", seconds=every.sla_interval, id="sla", next_run_time=now)
    # The watchers start with the scheduler and are waited for when it shuts down.
    scheduler.add_job(jobs.start_watchers, "date", run_date=now, id="idle-watchers")
    scheduler.add_listener(lambda _event: jobs.join_watchers(), EVENT_SCHEDULER_SHUTDOWN)
    return scheduler
