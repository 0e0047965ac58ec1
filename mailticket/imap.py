"""imapclient adapter: UIDVALIDITY/UID watermark, batched BODY.PEEK fetches, move or flag after commit, IDLE."""

from __future__ import annotations

import logging
import re
import selectors
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailticket.config import OAUTH2, MailboxSettings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds, for connecting and for each socket read
SECURITY_MODES = ("tls", "starttls", "none")
# imapclient writes UID sets out in full ("7,8,9", never "7:9") and cannot take a "7:*" range,
# and Dovecot refuses command lines over 64 KiB; RFC 7162 asks clients to stay near 8 KiB,
# which is about 1,000 seven-digit UIDs. Longer lists are split into several commands.
MAX_UIDS_PER_COMMAND = 1_000
SIZE = b"RFC822.SIZE"
BODY = b"BODY[]"  # the server answers BODY.PEEK[] under this name
INTERNALDATE = b"INTERNALDATE"
BODY_AND_DATE = ["BODY.PEEK[]", "INTERNALDATE"]  # PEEK: fetching must never set \Seen
# Of a message over the size limit only its head is fetched (its headers and the start of its text, enough to
# tell whose it is): it is quarantined, and the whole of it stays in the mailbox.
OVERSIZE_HEAD_BYTES = 256 * 1024
HEAD_AND_DATE = [f"BODY.PEEK[]<0.{OVERSIZE_HEAD_BYTES}>", "INTERNALDATE", "BODYSTRUCTURE"]
HEAD = b"BODY[]<0>"  # the server's name for the partial fetch above
STRUCTURE = b"BODYSTRUCTURE"
# A basic part of a BODYSTRUCTURE: type, subtype, parameters, id, description, encoding, size (RFC 3501 §7.4.2).
PART_PARAMETERS, PART_SIZE = 2, 6
SEEN = b"\\Seen"
DELETED = b"\\Deleted"
EXISTS = b"EXISTS"  # the untagged response that announces a new message count
# How often idle_wait looks at its `interrupted` callback while the server is quiet.
IDLE_TICK = 1.0
BYTES_REPR = re.compile(r"^b(['\"])(.*)\1$")  # imapclient puts the server's text in errors as repr(bytes)


class MailboxError(Exception):
    """An IMAP failure, in one sentence naming the mailbox; `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool = False, login_refused: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.login_refused = login_refused


@dataclass(frozen=True)
class Downloaded:
    uid: int
    internaldate: datetime  # timezone-aware UTC: when the IMAP server received the message
    raw: bytes
    size: int  # RFC822.SIZE: over the caller's limit, `raw` holds only the first OVERSIZE_HEAD_BYTES of it
    # Of such a message, the parts left in the mailbox, as its BODYSTRUCTURE names them: (file name, bytes).
    held_back: tuple[tuple[str, int], ...] = ()


def plan_batches(sizes: Sequence[tuple[int, int]], *, batch_size: int, max_batch_bytes: int) -> list[list[int]]:
    """Splits (uid, size) pairs, in order, into UID lists of at most batch_size messages and
    max_batch_bytes bytes; a message larger than max_batch_bytes gets a batch of its own."""
    if batch_size < 1 or max_batch_bytes < 1:
        raise ValueError("batch_size and max_batch_bytes must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for uid, size in sizes:
        if current and (len(current) >= batch_size or current_bytes + size > max_batch_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(uid)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def _chunks(uids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(uids), size):
        yield uids[start:start + size]


def _reason(exc: BaseException) -> str:
    return BYTES_REPR.sub(r"\2", str(exc))


def _utc(value: datetime) -> datetime:
    # normalise_times=False makes imapclient keep the server's offset; a naive value would mean local time.
    return value.astimezone(timezone.utc)


class MailboxConnection:
    """One logged-in IMAP connection to one mailbox folder."""

    def __init__(self, settings: MailboxSettings, *, timeout: float = DEFAULT_TIMEOUT,
                 access_token: Callable[[], str] | None = None) -> None:
        self.settings = settings
        # With auth = "oauth2": gives a valid access token, asked for at login so that a retry gets a fresh one.
        self._access_token = access_token
        self._client: IMAPClient | None = None
        self._processed_folder_exists = False
        with self._errors("connecting"):
            self._client = self._open(timeout)

    def _open(self, timeout: float) -> IMAPClient:
        settings = self.settings
        if settings.security not in SECURITY_MODES:
            raise MailboxError(f"{self._where}: security must be one of {', '.join(SECURITY_MODES)}, "
                               f"not {settings.security!r}")
        context = ssl.create_default_context()
        client = IMAPClient(settings.host, settings.port, ssl=settings.security == "tls",
                            ssl_context=context if settings.security == "tls" else None, timeout=timeout)
        try:
            if settings.security == "starttls":
                if not client.has_capability("STARTTLS"):
                    # Logging in anyway would send the password in clear text.
                    raise MailboxError(f"{self._where}: security is starttls but the server offers no STARTTLS")
                client.starttls(context)
            if settings.auth == OAUTH2:
                if self._access_token is None:
                    raise MailboxError(f"{self._where}: auth is oauth2 but no token source was given")
                # SASL XOAUTH2 (RFC 7628's predecessor, what Microsoft 365 and Gmail speak).
                client.oauth2_login(settings.username, self._access_token())
            else:
                client.login(settings.username, settings.password)
        except BaseException:
            _shutdown_quietly(client)
            raise
        client.normalise_times = False
        return client

    @property
    def _where(self) -> str:
        s = self.settings
        return f"mailbox {s.name!r} ({s.username}@{s.host}:{s.port})"

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turns socket and IMAP errors into a MailboxError that names the mailbox and the step."""
        try:
            yield
        except MailboxError:
            raise
        except LoginError as exc:
            raise MailboxError(f"{self._where}: login refused: {_reason(exc)}", login_refused=True) from exc
        except ssl.SSLCertVerificationError as exc:
            # A certificate that does not verify will not verify on the next attempt either.
            raise MailboxError(f"{self._where}: {doing} failed, TLS certificate rejected: {_reason(exc)}") from exc
        except (OSError, IMAPClient.AbortError) as exc:
            raise MailboxError(f"{self._where}: {doing} failed, server unreachable or connection lost: "
                               f"{_reason(exc)}", transient=True) from exc
        except IMAPClient.Error as exc:
            raise MailboxError(f"{self._where}: {doing} failed: {_reason(exc)}") from exc

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError(f"{self._where}: connection is closed")
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (OSError, IMAPClient.Error):
            # The connection is often already gone (that may be why we are closing); nothing left to tidy.
            _shutdown_quietly(client)

    def __enter__(self) -> "MailboxConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def select(self) -> int:
        """Selects the folder (read-write) and returns its UIDVALIDITY."""
        folder = self.settings.folder
        with self._errors(f"selecting folder {folder!r}"):
            info = self.client.select_folder(folder, readonly=False)
        if info.get(b"READ-ONLY"):
            raise MailboxError(f"{self._where}: folder {folder!r} opened read-only, so mail could not be "
                               "moved or flagged after ingest")
        return int(info[b"UIDVALIDITY"])

    def examine(self) -> int:
        """Selects the folder read-only, for watching it: returns UIDVALIDITY, and forgets the message count
        announced on selecting, so that idle_wait reports only what arrives from now on."""
        folder = self.settings.folder
        with self._errors(f"examining folder {folder!r}"):
            info = self.client.select_folder(folder, readonly=True)
        self._take_pending_exists()
        return int(info[b"UIDVALIDITY"])

    def supports_idle(self) -> bool:
        with self._errors("reading the server's capabilities"):
            return bool(self.client.has_capability("IDLE"))

    def idle_wait(self, timeout: float, *, interrupted: Callable[[], bool] = lambda: False,
                  tick: float = IDLE_TICK) -> bool:
        """Waits in IMAP IDLE (RFC 2177) for at most `timeout` seconds; True as soon as the server says that new
        mail arrived in the selected folder, False at the timeout or within `tick` once `interrupted()` is true.

        Other news (flags another client set, expunges, keep-alives) does not end the wait. A connection the
        server closed raises MailboxError (transient), so that the caller reconnects.
        """
        client = self.client
        deadline = time.monotonic() + timeout
        with self._errors("waiting for new mail (IDLE)"):
            # Mail announced in reply to an earlier command was not reported to the caller yet.
            if self._take_pending_exists():
                return True
            while True:
                client.idle()
                try:
                    news = self._wait_for_news(deadline, interrupted, tick)
                finally:
                    # The server's news is read only after DONE, in blocking mode and whole lines at a time:
                    # imapclient's idle_check reads without blocking and drops a response that comes in pieces.
                    _text, responses = client.idle_done()
                if _announces_mail(responses) or self._take_pending_exists():
                    return True
                if not news or interrupted() or time.monotonic() >= deadline:
                    return False

    def _wait_for_news(self, deadline: float, interrupted: Callable[[], bool], tick: float) -> bool:
        """True once the server sent anything during IDLE; False at the deadline or once interrupted."""
        sock = self.client.socket()
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while not interrupted():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self._buffered() or selector.select(min(tick, left)):
                    return True  # also when the server closed the connection: DONE then fails and says so
        return False

    def _buffered(self) -> bool:
        """Whether a response already sits in imaplib's read buffer (or TLS's), where the socket does not show it."""
        sock = self.client.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return bool(self.client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(timeout)

    def _take_pending_exists(self) -> bool:
        # imaplib keeps the untagged responses that came with other commands' answers in this dict (imapclient
        # reads it the same way after SELECT). Emptying it reports each EXISTS once, and keeps a watching
        # connection's flag and keep-alive news from piling up there over the days.
        pending = self.client._imap.untagged_responses
        arrived = bool(pending.pop("EXISTS", None))
        pending.clear()
        return arrived

    def batches(self, after_uid: int, *, batch_size: int, max_batch_bytes: int,
                max_message_bytes: int | None = None) -> Iterator[list[Downloaded]]:
        """Messages with UID > after_uid, ascending, in batches: one FETCH round trip per batch (two when it holds a
        message over `max_message_bytes`, of which only the head is fetched)."""
        batch_size = min(batch_size, MAX_UIDS_PER_COMMAND)
        with self._errors("listing new messages"):
            # "UID n:*" always matches the highest UID even when it is below n (RFC 3501 6.4.8).
            uids = sorted(uid for uid in self.client.search(["UID", f"{after_uid + 1}:*"]) if uid > after_uid)
            # Sizes first, so that a batch is bounded in bytes and memory stays flat however big the backlog.
            sizes: list[tuple[int, int]] = []
            for chunk in _chunks(uids, MAX_UIDS_PER_COMMAND):
                reply = self.client.fetch(chunk, [SIZE])
                sizes.extend((uid, reply[uid][SIZE]) for uid in chunk if SIZE in reply.get(uid, {}))
        full = dict(sizes)
        limit = max_message_bytes or max(full.values(), default=0)
        planned = [(uid, min(size, OVERSIZE_HEAD_BYTES) if size > limit else size) for uid, size in sizes]
        for batch in plan_batches(planned, batch_size=batch_size, max_batch_bytes=max_batch_bytes):
            whole = [uid for uid in batch if full[uid] <= limit]
            heads = [uid for uid in batch if full[uid] > limit]
            with self._errors(f"fetching {len(batch)} messages from UID {batch[0]}"):
                reply = self.client.fetch(whole, BODY_AND_DATE) if whole else {}
                if heads:
                    reply.update({uid: {BODY: data.get(HEAD, b""), INTERNALDATE: data[INTERNALDATE],
                                        STRUCTURE: data.get(STRUCTURE)}
                                  for uid, data in self.client.fetch(heads, HEAD_AND_DATE).items()})
            # A UID missing from the reply was expunged by someone else since the listing: nothing to ingest.
            fetched = [Downloaded(uid, _utc(reply[uid][INTERNALDATE]), reply[uid][BODY], full[uid],
                                  tuple(named_parts(reply[uid].get(STRUCTURE))))
                       for uid in batch if BODY in reply.get(uid, {})]
            if fetched:
                yield fetched

    def finish(self, uids: Sequence[int]) -> None:
        """After the commit: move to processed_folder when set, else set \\Seen."""
        uids = sorted(set(uids))
        if not uids:
            return
        target = self.settings.processed_folder
        if target:
            self._ensure_processed_folder(target)
        for chunk in _chunks(uids, MAX_UIDS_PER_COMMAND):
            if target:
                with self._errors(f"moving {len(chunk)} messages to {target!r}"):
                    self._move(chunk, target)
            else:
                with self._errors(f"flagging {len(chunk)} messages seen"):
                    self.client.add_flags(chunk, [SEEN], silent=True)

    def finish_leftovers(self, last_uid: int) -> None:
        """Finishes messages at or below the watermark that a pass committed but died before finishing."""
        if last_uid < 1:
            return
        criteria = ["UID", f"1:{last_uid}"]
        if not self.settings.processed_folder:
            criteria.append("UNSEEN")  # seen ones are finished already
        with self._errors("listing messages left over by an interrupted pass"):
            leftovers = [uid for uid in self.client.search(criteria) if uid <= last_uid]
        if leftovers:
            log.info("%s: finishing %d messages left over by an interrupted pass", self._where, len(leftovers))
        self.finish(leftovers)

    def _move(self, uids: Sequence[int], target: str) -> None:
        client = self.client
        if client.has_capability("MOVE"):
            client.move(uids, target)
            return
        client.copy(uids, target)
        client.add_flags(uids, [DELETED], silent=True)
        # A plain EXPUNGE would also purge what a person flagged \Deleted; without UIDPLUS the
        # originals stay flagged until a mail client expunges them (the watermark skips them).
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)

    def _ensure_processed_folder(self, target: str) -> None:
        if self._processed_folder_exists:
            return
        with self._errors(f"creating folder {target!r}"):
            if not self.client.folder_exists(target):
                try:
                    self.client.create_folder(target)
                except IMAPClient.Error:
                    # Another instance may have created it a moment ago; only a still-missing folder is an error.
                    if not self.client.folder_exists(target):
                        raise
        self._processed_folder_exists = True


def named_parts(structure) -> Iterator[tuple[str, int]]:
    """(file name, size) of each part of a BODYSTRUCTURE that names a file, in order; nothing for None."""
    if structure is None:
        return
    if getattr(structure, "is_multipart", False):
        for part in structure[0]:
            yield from named_parts(part)
        return
    names = [value for field in structure if isinstance(field, tuple) for value in _filenames(field)]
    size = structure[PART_SIZE] if len(structure) > PART_SIZE and isinstance(structure[PART_SIZE], int) else 0
    if names:
        yield names[0], size


def _filenames(field: tuple) -> Iterator[str]:
    """The "name"/"filename" values in a parameter list or a disposition ("attachment", ("filename", ...))."""
    for key, value in zip(field[::2], field[1::2]):
        if isinstance(value, tuple):
            yield from _filenames(value)
        elif isinstance(key, bytes) and key.lower() in (b"name", b"filename") and isinstance(value, bytes):
            yield value.decode("utf-8", "replace")


def _announces_mail(responses: Sequence) -> bool:
    """Whether parsed IDLE responses such as [(3, b'EXISTS'), (b'OK', b'Still here')] include an EXISTS."""
    return any(isinstance(r, tuple) and len(r) >= 2 and r[1] == EXISTS for r in responses)


def _shutdown_quietly(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except (OSError, IMAPClient.Error):
        pass  # the socket is already closed


def connect_with_backoff(
    settings: MailboxSettings,
    *,
    attempts: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    timeout: float = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    access_token: Callable[[], str] | None = None,
) -> MailboxConnection:
    """A logged-in connection; transient failures are retried after base_delay, 2x, 4x... up to max_delay.

    A refused login or a broken setting is raised at once: repeating it would only lock the account.
    """
    for attempt in range(1, attempts + 1):
        try:
            return MailboxConnection(settings, timeout=timeout, access_token=access_token)
        except MailboxError as exc:
            if not exc.transient:
                raise
            if attempt == attempts:
                raise MailboxError(f"{exc} (gave up after {attempts} attempts)", transient=True) from exc
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            log.warning("%s; retrying in %.1f s (attempt %d of %d)", exc, delay, attempt, attempts)
            sleep(delay)
    raise ValueError("attempts must be at least 1")
