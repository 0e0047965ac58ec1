"""Who a reply goes to: the Reply-To of the customer's newest message, else its From; the others that message went
to are offered as Cc ("reply to all"); what the operator types instead is checked address by address."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailticket.config import Settings
from mailticket.db.models import IN, Message
from mailticket.mail import address
from mailticket.service.errors import ActionError
from mailticket.service.tickets import get_ticket

# To and Cc together: a reply to a customer, not a mailing.
MAX_RECIPIENTS = 50
# What separates addresses typed into one field; a valid address holds none of these.
TYPED_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class Recipients:
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.to, *self.cc)


def proposed(newest: Message | None, customer: str, own: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The address to answer (Reply-To, else From, of the customer's newest message; the customer's when there is
    none) and everyone else on that message (its sender, when answers go elsewhere, and whom it went to), our own
    mailboxes left out."""
    answer = ((newest.reply_to or newest.from_addr) if newest is not None else "") or customer
    ours = {a.lower() for a in own} | {answer}
    written = f"{newest.from_addr} {newest.to_addrs}" if newest is not None else ""
    others = [a for a in TYPED_SEPARATORS.split(written) if a]
    return answer, tuple(dict.fromkeys(a for a in others if a not in ours and address.is_valid(a)))


def typed(text: str, field: str) -> tuple[str, ...]:
    """The addresses typed into one field, each checked; ActionError names the first that is none."""
    found = []
    for item in TYPED_SEPARATORS.split(text.strip()):
        if not item:
            continue
        if (problem := address.problem(item.lower())) is not None:
            raise ActionError(f"{field}: {item[:80]!r} is not an e-mail address ({problem})")
        found.append(item.lower())
    return tuple(dict.fromkeys(found))


def chosen(to: Sequence[str], cc: Sequence[str]) -> Recipients:
    """To and Cc as the operator chose them: at least one To, at most MAX_RECIPIENTS in all, each checked."""
    to = tuple(dict.fromkeys(a.strip().lower() for a in to if a.strip()))
    cc = tuple(a for a in dict.fromkeys(a.strip().lower() for a in cc if a.strip()) if a not in to)
    if not to:
        raise ActionError("To: the reply needs at least one address")
    if len(to) + len(cc) > MAX_RECIPIENTS:
        raise ActionError(f"To and Cc: at most {MAX_RECIPIENTS} addresses")
    for field, addresses in (("To", to), ("Cc", cc)):
        for item in addresses:
            if (problem := address.problem(item)) is not None:
                raise ActionError(f"{field}: {item[:80]!r} is not an e-mail address ({problem})")
    return Recipients(to, cc)


def for_reply(session: Session, settings: Settings, ticket_id: int, *, to: Sequence[str] | None,
              cc: Sequence[str] = (), reply_all: bool = False) -> Recipients:
    """To and Cc of a reply: `to` as chosen, else the proposal; `cc` as chosen, plus the others on the customer's
    newest mail with `reply_all`; each checked."""
    newest = session.scalar(
        select(Message).where(Message.ticket_id == ticket_id, Message.direction == IN, Message.loop.is_(None))
        .order_by(Message.received_at.desc(), Message.id.desc()).limit(1))
    answer, others = proposed(newest, get_ticket(session, ticket_id).customer.address, settings.own_addresses)
    return chosen(to if to is not None else (answer,), (*cc, *(others if reply_all else ())))
