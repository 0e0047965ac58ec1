"""SMTP adapter (aiosmtplib): sends stored bytes over TLS, STARTTLS or plain, and says whether a failure is final."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence

import aiosmtplib

from mailticket.config import OAUTH2, SmtpSettings
from mailticket.mail import address

TLS, STARTTLS = "tls", "starttls"  # and "none": plain SMTP
# RFC 5321 §4.2.1: 4yz replies are transient, 5yz replies are final.
FIRST_PERMANENT_CODE = 500
# aiosmtplib's timeout bounds each command; a server that answers every command just in time could still hold
# one message (or one login) for long, so each of them gets this many timeouts in all.
BUDGET_TIMEOUTS = 2
SMTPUTF8 = "SMTPUTF8"
# The one refusal of MAIL FROM that is about the message (its SIZE), not about our relay settings.
MESSAGE_TOO_BIG = 552
# RFC 5321 §4.5.3.2.6: after the data's final dot a client waits at least 10 minutes for the reply, since the
# relay may be checking the message. Giving up sooner makes a slow relay receive the message again on each retry.
DATA_REPLY_TIMEOUT = 600.0


class SmtpFailure(Exception):
    """A message was not accepted: the SMTP reply code (None when there was no reply) and the server's words."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code} {self.message}" if self.code else self.message


class TemporaryFailure(SmtpFailure):
    """Worth another try later: a 4xx reply, a lost connection, a timeout."""


class RelayUnavailable(TemporaryFailure):
    """The relay could not be reached or would not let us in (DNS, refused, TLS, login): nothing was sent,
    and every other message would fail the same way right now."""


class LoginRefused(RelayUnavailable):
    """The relay refused our login: a wrong password, or an OAuth2 token it no longer takes."""


class PermanentFailure(SmtpFailure):
    """A 5xx reply (or an address no server could take): sending the same bytes again will not help."""


def longest_send(settings: SmtpSettings) -> float:
    """Seconds one `Connection.send` may take at most, connecting and logging in included."""
    return 2 * BUDGET_TIMEOUTS * settings.timeout + DATA_REPLY_TIMEOUT


class Connection:
    """One SMTP session reused for several messages; it reconnects on the next send after it was lost."""

    def __init__(self, settings: SmtpSettings, *, tls_context: ssl.SSLContext | None = None,
                 access_token: Callable[[], Awaitable[str]] | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context
        # With auth = "oauth2": gives a valid token at each login, or raises RelayUnavailable saying why not.
        self.access_token = access_token
        self._client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> dict[str, str]:
        """Sends `raw` as it is; returns the recipients refused while others accepted it (address -> reply).

        Raises PermanentFailure, TemporaryFailure or RelayUnavailable; nothing else.
        """
        if not recipients or not raw:
            raise PermanentFailure(None, "the message has no recipients" if raw else "the stored message is empty")
        for recipient in recipients:
            if (problem := address.problem(recipient)) is not None:
                # Stored rows hold one address each; this guards against a row written by hand or by old code.
                raise PermanentFailure(None, f"invalid address {recipient[:80]!r}: {problem}")
        client = await self._connected()
        budget = BUDGET_TIMEOUTS * self.settings.timeout + DATA_REPLY_TIMEOUT
        try:
            async with asyncio.timeout(budget):
                refused = await _transfer(client, raw, sender, recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _all_refused(exc.recipients) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            if exc.code == MESSAGE_TOO_BIG:
                raise PermanentFailure(exc.code, exc.message) from None
            # Our own address refused ("530 authentication required", "550 relaying denied") is the relay's
            # set-up, not this message: every message would meet it, and fixing the config must let them all go.
            raise RelayUnavailable(exc.code, f"the relay refused the sender {exc.sender}: {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, exc.message) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentFailure(None, f"the relay cannot take this message: {exc.message}") from None
        except ValueError as exc:  # aiosmtplib refuses addresses it cannot put on the wire safely.
            raise PermanentFailure(None, f"invalid address: {exc}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # lost, reset, timed out (TimeoutError is an OSError)
            # Cut off in the middle of a command: the session is in an unknown state, so it is not reused.
            self._drop()
            raise TemporaryFailure(None, _describe(exc, budget)) from None
        return {recipient: f"{reply.code} {reply.message}" for recipient, reply in refused.items()}

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await asyncio.wait_for(client.quit(), self.settings.timeout)
            except (aiosmtplib.SMTPException, OSError):
                client.close()  # A polite QUIT is all that failed; the messages are already accepted.

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, timeout=s.timeout, use_tls=s.security == TLS,
            # True, not None: with "starttls" configured, a relay without STARTTLS must not get our password in clear.
            start_tls=s.security == STARTTLS, tls_context=self.tls_context,
            username=s.username or None if s.auth != OAUTH2 else None,
            password=s.password if s.username and s.auth != OAUTH2 else None,
        )
        budget = BUDGET_TIMEOUTS * s.timeout
        token = None
        if s.auth == OAUTH2:
            if self.access_token is None:
                raise RelayUnavailable(None, "smtp.auth is oauth2 but no token source was given")
            token = await self.access_token()  # before connecting: the renewal may take a while
        try:
            async with asyncio.timeout(budget):
                await client.connect()
                if token is not None:
                    await client.auth_xoauth2(s.username, token)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise LoginRefused(exc.code, f"login refused: {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:  # a 421/554 greeting or a refused EHLO
            raise RelayUnavailable(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # refused, reset, DNS, TLS, no STARTTLS, timed out
            text = _describe(exc, budget)
            raise RelayUnavailable(None, text if s.host in text else f"{s.host}:{s.port}: {text}") from None
        self._client = client
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


async def send(settings: SmtpSettings, raw: bytes, sender: str, recipients: Sequence[str], *,
               tls_context: ssl.SSLContext | None = None, access_token: str | None = None) -> dict[str, str]:
    """One message on a connection of its own; see `Connection.send`."""

    async def token() -> str:
        return access_token or ""

    async with Connection(settings, tls_context=tls_context, access_token=token) as conn:
        return await conn.send(raw, sender, recipients)


async def _transfer(client: aiosmtplib.SMTP, raw: bytes, sender: str,
                    recipients: Sequence[str]) -> dict[str, aiosmtplib.SMTPRecipientRefused]:
    """MAIL, RCPT and DATA as aiosmtplib's sendmail sends them, but with RFC 5321's wait for the final reply
    (sendmail waits as long for every command). Returns the recipients refused while others were accepted."""
    # Non-ASCII addresses need SMTPUTF8; asking for it otherwise would refuse relays that lack it for nothing.
    utf8 = not all(a.isascii() for a in (sender, *recipients))
    if client.last_ehlo_response is None:
        await client.ehlo()
    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    options = ([SMTPUTF8] if utf8 else []) + ([f"SIZE={len(raw)}"] if client.supports_extension("size") else [])
    encoding = "utf-8" if utf8 else "ascii"
    try:
        await client.mail(sender, options=options, encoding=encoding)
        refused = {}
        for recipient in recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[recipient] = exc
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(list(refused.values()))
        await client.data(raw, timeout=DATA_REPLY_TIMEOUT)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        try:
            await client.rset()  # the envelope is reset, so that the session can carry the next message
        except (aiosmtplib.SMTPException, OSError):
            pass
        raise
    return refused


def _by_code(code: int, message: str) -> SmtpFailure:
    return (PermanentFailure if code >= FIRST_PERMANENT_CODE else TemporaryFailure)(code, message)


def _all_refused(refusals: Sequence[aiosmtplib.SMTPRecipientRefused]) -> SmtpFailure:
    """Every recipient refused: final only if every refusal is, since a 4xx one may pass on the next try."""
    text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals)
    codes = [r.code for r in refusals]
    if all(code >= FIRST_PERMANENT_CODE for code in codes):
        return PermanentFailure(codes[0], text)
    return TemporaryFailure(min(codes), text)


def _describe(exc: BaseException, budget: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):  # our own budget ran out, not aiosmtplib's timeout
        return f"no answer within {budget:g} s"
    return str(exc) or type(exc).__name__
