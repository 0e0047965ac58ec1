"""Ingest benchmark: 1,000 conversations x 5 messages from a private Dovecot into SQLite, against a bare baseline.

Run from the repository root: `python -m bench.ingest` (needs dovecot-imapd, like the tests).
"""

from __future__ import annotations

import argparse
import email
import json
import resource
import subprocess
import sys
import tempfile
import time
from email import policy
from pathlib import Path

from imapclient import IMAPClient

from mailticket.config import MailboxSettings, Settings
from mailticket.db.store import Store
from mailticket.service.poll import poll_mailbox
from tests.dovecot import Dovecot
from tests.mails import make_mail

CONVERSATIONS = 1000
PER_CONVERSATION = 5
BATCH = 100
PASSWORD = "benchpass"
PARAGRAPH = ("Olá, comprei um tênis tamanho 42 e chegou o 40. Gostaria de trocar pelo tamanho certo, "
             "o pedido é o número {n}. Obrigado pela atenção!\n")


def mailbox(conversations: int) -> list[bytes]:
    mails = []
    for n in range(conversations):
        ids = [f"c{n}-{r}@customer.example" for r in range(PER_CONVERSATION)]
        for r in range(PER_CONVERSATION):
            mails.append(make_mail(
                message_id=ids[r], sender=f"customer{n}@mail.example", subject=("Re: " if r else "") + f"Pedido {n}",
                body=PARAGRAPH.format(n=n) * 20, in_reply_to=ids[r - 1] if r else None, references=ids[:r] or None,
            ))
    return mails


def baseline(host: str, port: int, user: str, password: str) -> float:
    """A bare imapclient FETCH of everything in batches, plus stdlib parsing of each message."""
    start = time.perf_counter()
    client = IMAPClient(host, port, ssl=False)
    client.login(user, password)
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    for i in range(0, len(uids), BATCH):
        for data in client.fetch(uids[i:i + BATCH], ["BODY.PEEK[]", "INTERNALDATE"]).values():
            msg = email.message_from_bytes(data[b"BODY[]"], policy=policy.default)
            body = msg.get_body(("plain", "html"))
            _ = (msg["Subject"], msg["From"], msg["Message-ID"], body.get_content() if body else "")
    client.logout()
    return time.perf_counter() - start


def ours(host: str, port: int, user: str, password: str) -> tuple[float, dict]:
    """mailticket's poll of the same mailbox into a fresh SQLite file."""
    box = MailboxSettings(name="bench", host=host, port=port, security="none", username=user,
                          password=password, address="support@shop.example", batch_size=BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.migrate()
        start = time.perf_counter()
        counts = poll_mailbox(store, Settings(mailboxes=(box,)), box)
        elapsed = time.perf_counter() - start
        store.dispose()
    return elapsed, counts.__dict__


def child(which: str, host: str, port: int, user: str) -> None:
    """Runs one side in a process of its own, so that its peak memory is its own."""
    if which == "baseline":
        result = {"seconds": baseline(host, port, user, PASSWORD)}
    else:
        seconds, counts = ours(host, port, user, PASSWORD)
        result = {"seconds": seconds, "counts": counts}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.ingest", "--child", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, host, port, user = args.child
        child(which, host, int(port), user)
        return
    with Dovecot() as server:
        for conversations in (CONVERSATIONS // 5, CONVERSATIONS):
            user = f"bench{conversations}"
            server.add_user(user, PASSWORD)
            server.deliver(user, mailbox(conversations))
            size = conversations * PER_CONVERSATION
            base = run_child("baseline", server.host, str(server.port), user)
            mine = run_child("mailticket", server.host, str(server.port), user)
            print(f"{size:>5} messages: mailticket {mine['seconds']:.2f} s ({size / mine['seconds']:.0f} msg/s, "
                  f"peak RSS {mine['peak_rss_mb']} MB), bare FETCH+parse {base['seconds']:.2f} s "
                  f"(peak RSS {base['peak_rss_mb']} MB), ratio {mine['seconds'] / base['seconds']:.2f}x, "
                  f"counts {mine['counts']}")


if __name__ == "__main__":
    main()
