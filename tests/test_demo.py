"""`mailticket demo` as a visitor runs it: sample tickets with no config, the sandbox page, a clean Ctrl-C."""

from __future__ import annotations

import queue
import re
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from mailticket.demo.mail import SUPPORT_ADDRESS
from mailticket.localtime import local_time
from tests.dovecot import free_port


START_TIMEOUT = 60.0
STOP_WITHIN = 10.0
INGEST_TIMEOUT = 30.0
ACTION_TIMEOUT_MS = 10_000
SAMPLE_TICKETS = 21  # 23 sample mails, three of them one thread
URL_LINE = re.compile(r"mailticket demo running at (http://\S+?)/?\s")
LOGIN = re.compile(r"log in as (\w+) / (\S+) \(admin\)")
TEMP_DIR = re.compile(r"temporary dir:\s+(\S+)")
DATABASE = re.compile(r"database:\s+(\S+)")
SMTP_PORT = re.compile(r"sandbox SMTP:\s+127\.0\.0\.1:(\d+)")


@dataclass
class Demo:
    """A running `python -m mailticket demo` and what its banner said."""

    proc: subprocess.Popen
    stderr_path: Path
    lines: queue.Queue = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def wait_for_banner(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"the demo ended early:\n{self.text}\n{self.errors}"
                continue
            if line is None:
                break
            self.output.append(line)
            if DATABASE.search(line):
                return
        raise AssertionError(f"the demo printed no banner within {START_TIMEOUT} s:\n{self.text}\n{self.errors}")

    def find(self, pattern: re.Pattern) -> re.Match:
        found = pattern.search(self.text)
        assert found, f"{pattern.pattern!r} not in the demo's output:\n{self.text}"
        return found

    @property
    def text(self) -> str:
        return "".join(self.output)

    @property
    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return self.find(URL_LINE).group(1)

    @property
    def login(self) -> tuple[str, str]:
        return self.find(LOGIN).group(1, 2)

    @property
    def folder(self) -> Path:
        return Path(self.find(TEMP_DIR).group(1))

    @property
    def database(self) -> Path:
        return Path(self.find(DATABASE).group(1))

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C; the exit code and how long the demo took to stop."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return code, time.monotonic() - began

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_for_tickets(self, count: int = SAMPLE_TICKETS) -> None:
        deadline = time.monotonic() + INGEST_TIMEOUT
        while time.monotonic() < deadline:
            if self.query("SELECT count(*) FROM tickets")[0][0] >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"the demo did not ingest its sample mail within {INGEST_TIMEOUT} s:\n{self.errors}")


def start_demo(tmp_path: Path, port: int | None = None, *options: str) -> Demo:
    stderr_path = tmp_path / f"demo-{time.monotonic_ns()}.err"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "mailticket", "demo", "--port", str(port or free_port()),
                                 *options], stdout=subprocess.PIPE, stderr=stderr, text=True)
    demo = Demo(proc, stderr_path)

    def read() -> None:  # drains stdout for the whole run, so the demo never blocks on a full pipe
        for line in proc.stdout:
            demo.lines.put(line)
        demo.lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    """The English demo: these tests read the pages' English words (the Portuguese one has a test of its own)."""
    running = start_demo(tmp_path_factory.mktemp("demo"), None, "--language", "en")
    try:
        running.wait_for_banner()
        running.wait_for_tickets()
        yield running
    finally:
        if running.proc.poll() is None:
            running.interrupt()


def log_in(chromium: Browser, demo: Demo) -> Page:
    context = chromium.new_context(base_url=demo.url)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    username, password = demo.login
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_url(f"{demo.url}/")
    return page


def send_as_mailticket(demo: Demo, *, to: str, subject: str, ticket_id: int, message_id: str, text: str) -> None:
    """A reply as mailticket's outbox sends it, handed straight to the sandbox SMTP server."""
    msg = EmailMessage()
    msg["From"] = f"Loja Exemplo <{SUPPORT_ADDRESS}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    msg["X-Mailticket-Loop"] = str(ticket_id)
    msg.set_content(text)
    with smtplib.SMTP("127.0.0.1", int(demo.find(SMTP_PORT).group(1)), timeout=10) as smtp:
        smtp.send_message(msg)


def test_the_printed_operator_sees_the_sample_tickets_in_the_queue(chromium, demo):
    page = log_in(chromium, demo)
    rows = page.locator("#queue-table tr.ticket-row")
    expect(rows.nth(14)).to_be_visible()
    assert rows.count() >= 15
    expect(page.locator("#queue-table")).to_contain_text("Cobrança em duplicidade no cartão")
    expect(page.locator("#queue-table")).to_contain_text("Where is my order? #48102")
    page.context.close()


def test_the_out_of_office_sample_is_flagged_as_an_auto_reply(demo):
    flagged = demo.query("SELECT subject, loop FROM messages WHERE direction = 'in' AND loop IS NOT NULL")
    assert flagged == [("Resposta automática: Seu pedido #48290 foi enviado", "auto-reply")]


def test_the_three_mails_about_one_invoice_are_one_ticket(demo):
    matched = demo.query("SELECT m.matched_by FROM messages m JOIN tickets t ON t.id = m.ticket_id "
                         "WHERE t.subject = 'Nota fiscal do pedido #47750' AND m.direction = 'in' "
                         "ORDER BY m.received_at")
    assert [rule for (rule,) in matched] == ["new", "in-reply-to", "subject"]


def test_the_mail_with_a_photo_keeps_its_attachment(demo):
    attachments = demo.query("SELECT a.filename, a.content_type FROM attachments a "
                             "JOIN messages m ON m.id = a.message_id WHERE m.direction = 'in'")
    assert attachments == [("etiqueta-caixa.png", "image/png")]


def test_the_sandbox_page_needs_a_login(chromium, demo):
    context = chromium.new_context(base_url=demo.url)
    page = context.new_page()
    page.goto("/demo")
    assert page.url.startswith(f"{demo.url}/login")
    assert context.request.post(f"{demo.url}/demo/answer", form={"number": "1", "subject": "x", "body": "y"},
                                max_redirects=0).status == 401
    context.close()


def answer_form(sent: Locator) -> Locator:
    """The answer form of one sent mail, unfolded: only the newest is open, and an acknowledgement the demo
    sends meanwhile can be newer than the mail the test looks at."""
    details = sent.locator("details.answer")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    return sent.locator("form.answer-form")


def test_a_customer_answer_from_the_sandbox_page_lands_on_the_ticket(chromium, demo):
    (ticket_id,) = demo.query("SELECT id FROM tickets WHERE subject = 'Pedido #48213 atrasado'")[0]
    send_as_mailticket(demo, to="mariana.costa@gmail.com", subject=f"Re: Pedido #48213 atrasado [#{ticket_id}]",
                       ticket_id=ticket_id, message_id="reply-48213@lojaexemplo.com.br",
                       text="Olá Mariana, o seu pedido saiu hoje pela transportadora.")
    page = log_in(chromium, demo)
    page.goto("/demo")
    sent = page.locator(".sent-mail").filter(has_text="reply-48213@lojaexemplo.com.br")
    expect(sent).to_contain_text("To mariana.costa@gmail.com")
    expect(sent).to_contain_text(f"Re: Pedido #48213 atrasado [#{ticket_id}]")
    expect(sent).to_contain_text("o seu pedido saiu hoje")

    # Without this session's CSRF token the same form is refused.
    refused = page.request.post(f"{demo.url}/demo/answer", form={"number": "1", "subject": "x", "body": "y"})
    assert refused.status == 403

    form = answer_form(sent)
    form.locator("textarea[name=body]").fill("Recebi o código de rastreio, obrigada!")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("mariana.costa@gmail.com answered")

    page.goto(f"/tickets/{ticket_id}")
    thread = page.locator("#thread")
    deadline = time.monotonic() + INGEST_TIMEOUT
    while "Recebi o código de rastreio" not in thread.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(thread).to_contain_text("Recebi o código de rastreio, obrigada!")
    page.context.close()


def test_an_operator_reply_reaches_the_sandbox_and_the_answer_with_a_new_subject_threads_back(chromium, demo):
    (ticket_id,) = demo.query("SELECT id FROM tickets WHERE subject = 'Cobrança em duplicidade no cartão'")[0]
    page = log_in(chromium, demo)
    page.goto(f"/tickets/{ticket_id}")
    page.click("#claim-button")
    page.fill("#reply-body", "Olá Juliana, já pedimos o estorno da segunda cobrança à operadora do cartão.")
    page.click("#reply-send")
    expect(page.locator("#thread")).to_contain_text("já pedimos o estorno")  # the reply is queued

    sent = page.locator(".sent-mail").filter(has_text="estorno da segunda cobrança")
    deadline = time.monotonic() + INGEST_TIMEOUT
    page.goto("/demo")
    while sent.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(sent).to_contain_text("To ju.pereira@uol.com.br")
    form = answer_form(sent)
    form.locator("input[name=subject]").fill("Estorno recebido")  # a new subject: only the headers thread it
    form.locator("textarea[name=body]").fill("O estorno apareceu na fatura. Obrigada!")
    form.locator("button[type=submit]").click()

    page.goto(f"/tickets/{ticket_id}")
    thread = page.locator("#thread")
    while "O estorno apareceu" not in thread.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(thread).to_contain_text("O estorno apareceu na fatura. Obrigada!")
    page.context.close()


def created_at(demo: Demo, subject: str) -> datetime:
    (stored,) = demo.query("SELECT created_at FROM tickets WHERE subject = ?", subject)[0]
    return datetime.fromisoformat(stored).replace(tzinfo=timezone.utc)  # SQLite keeps UTC without its offset


def test_the_english_demo_shows_times_in_sao_paulo_the_english_way(chromium, demo):
    assert "language:        en" in demo.text
    (ticket_id,) = demo.query("SELECT id FROM tickets WHERE subject = 'Cupom PRIMEIRACOMPRA não funciona'")[0]
    page = log_in(chromium, demo)
    page.goto(f"/tickets/{ticket_id}")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    opened = local_time(created_at(demo, "Cupom PRIMEIRACOMPRA não funciona"), "en", "America/Sao_Paulo")
    expect(page.locator("main")).to_contain_text(opened)
    assert [title for (title,) in demo.query("SELECT title FROM canned_replies ORDER BY title")] == [
        "Exchange or return", "Invoice", "Order in transit"]
    page.context.close()


def test_the_demo_starts_in_portuguese_with_slas_business_hours_routes_and_canned_replies(chromium, tmp_path):
    demo = start_demo(tmp_path)
    try:
        demo.wait_for_banner()
        assert "language:        pt-BR" in demo.text and "--language en" in demo.text
        demo.wait_for_tickets()
        assert [title for (title,) in demo.query("SELECT title FROM canned_replies ORDER BY title")] == [
            "Nota fiscal", "Pedido em trânsito", "Troca ou devolução"]
        routed = dict((subject, rest) for subject, *rest in demo.query(
            "SELECT subject, queue, priority, sla_name FROM tickets"))
        assert routed["Mediação aberta - pedido MX-99790 - responder em até 48 horas"] == ["marketplace", "high",
                                                                                          "parceiro"]
        assert routed["Troca de tamanho - tênis de corrida 39 para 40"] == ["trocas", "normal", "padrão"]
        assert routed["Cobrança em duplicidade no cartão"] == ["default", "normal", "padrão"]

        page = log_in(chromium, demo)  # an English browser: the demo's operators chose Portuguese
        (ticket_id,) = demo.query("SELECT id FROM tickets WHERE subject = 'Pedido #48213 atrasado'")[0]
        page.goto(f"/tickets/{ticket_id}")
        expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
        opened = created_at(demo, "Pedido #48213 atrasado").astimezone(ZoneInfo("America/Sao_Paulo"))
        expect(page.locator("main")).to_contain_text(opened.strftime("%d/%m/%Y %H:%M"))
        page.context.close()
    finally:
        code, _ = demo.interrupt()
    assert code == 0, demo.errors


def test_ctrl_c_stops_the_demo_with_exit_0_and_removes_its_temporary_dir(tmp_path):
    demo = start_demo(tmp_path)
    try:
        demo.wait_for_banner()
        assert demo.folder.is_dir() and demo.database.is_file()
        demo.wait_for_tickets()
    finally:
        code, took = demo.interrupt()
    assert code == 0, demo.errors
    assert took < STOP_WITHIN
    assert not demo.folder.exists()
    assert "Traceback" not in demo.errors


def test_the_demo_says_so_and_exits_1_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = start_demo(tmp_path, port)
        code = demo.proc.wait(timeout=30)
    assert code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in demo.errors
