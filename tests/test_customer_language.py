"""Customers in their language: what a mailbox sends them (acknowledgement, resolution and survey mail, the survey
page) is in that mailbox's language and carries the shop's name; `[templates] dir` overrides a shipped template,
check-config names a missing or broken one; the acknowledgement promises the moment the SLA clock computed."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailticket import letters
from mailticket.config import (AutoreplySettings, BusinessHoursSettings, CsatSettings, MailboxSettings, Settings,
                               SlaSettings, SmtpSettings, TemplateSettings, WebSettings, load)
from mailticket.db.models import Message, Operator, Outbox, Ticket
from mailticket.service import actions, operators
from mailticket.service.claims import claim
from mailticket.service.ingest import ingest
from mailticket.service.outbox import flush_sync
from mailticket.service.status import change_status
from mailticket.web.app import create_app
from tests.factories import make_operator
from tests.mails import SUPPORT, make_mail
from tests.test_web import element

T0 = datetime(2026, 11, 2, 13, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in São Paulo
SAO_PAULO = "America/Sao_Paulo"
SHOP = "Loja Exemplo"
FROM_NAME = "Atendimento Loja Exemplo"
SECRET = "customer-language-test-secret-key"
BASE_URL = "https://suporte.loja.example"
LINK = re.compile(re.escape(BASE_URL) + r"/csat/([A-Za-z0-9_.\-]+)")
SUBJECT = "Pedido 1234 não chegou"
WEEKDAYS = {day: (("09:00", "18:00"),) for day in range(5)}


def shop_settings(language: str, *, shop_name: str = SHOP, **changes) -> Settings:
    """One mailbox speaking `language`, business hours Monday to Friday in São Paulo, a 4-hour first response."""
    return dataclasses.replace(Settings(
        mailboxes=(MailboxSettings(name="support", host="localhost", username="u", password="p", address=SUPPORT,
                                   language=language),),
        smtp=SmtpSettings(from_name=FROM_NAME),
        web=WebSettings(secret_key=SECRET, base_url=BASE_URL, timezone=SAO_PAULO, shop_name=shop_name),
        sla=(SlaSettings(name="everyone", first_response=4 * 3600),),
        business_hours=BusinessHoursSettings(timezone=SAO_PAULO, weekly=WEEKDAYS),
        autoreply=AutoreplySettings(enabled=True), csat=CsatSettings(enabled=True, valid_days=14),
    ), **changes)


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch):
    monkeypatch.setattr(operators, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def put(store, settings: Settings, *, at: datetime = T0, subject: str = SUBJECT, **mail) -> int:
    with store.transaction() as session:
        return ingest(session, make_mail(subject=subject, **mail), settings=settings, received_at=at, now=at,
                      mailbox="support").ticket_id


def resolve(store, settings: Settings, ticket_id: int, at: datetime) -> None:
    """An operator answers the ticket, then resolves it: the resolution mail with the survey link is queued."""
    operator_id = make_operator(store, f"op{ticket_id}")
    with store.transaction() as session:
        operator = session.get(Operator, operator_id)
        view = claim(session, ticket_id, operator, 900, now=at - timedelta(minutes=10))
        actions.reply(session, settings, ticket_id, operator, "Já foi enviado.", view.token,
                      now=at - timedelta(minutes=5))
        change_status(session, ticket_id, "resolved", actor=operator, at=at, settings=settings)


def sent(smtp_sink, store, settings: Settings, at: datetime) -> list[email.message.EmailMessage]:
    """Every queued message through the outbox to the real SMTP sink; the messages as it received them."""
    flush_sync(store, dataclasses.replace(settings, smtp=smtp_sink.settings(from_name=FROM_NAME)), now=at)
    return [email.message_from_bytes(m.raw, policy=email.policy.default) for m in smtp_sink.messages]


def text_of(message: email.message.EmailMessage) -> str:
    """The plain-text body, its line ends as Python writes them (the wire has CRLF)."""
    return message.get_content().replace("\r\n", "\n")


def decoded(encoded: str) -> str:
    return str(make_header(decode_header(encoded)))


def headers_as_sent(raw: bytes) -> dict[str, str]:
    """The headers as bytes on the wire, unfolded, still encoded."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    return {name: value for name, _, value in (line.partition(": ") for line in unfolded.split("\r\n"))}


def survey_token(store, ticket_id: int) -> str:
    with store.reading() as session:
        text = session.scalar(select(Message.text).join(Outbox, Outbox.message_id == Message.id)
                              .where(Outbox.ticket_id == ticket_id, Outbox.kind == "notification"))
    return LINK.search(text).group(1)


def page(store, settings: Settings, url: str, *, now: datetime, **kwargs):
    client = TestClient(create_app(settings, store, clock=lambda: now), base_url=BASE_URL, follow_redirects=False)
    return client.post(url, **kwargs) if "data" in kwargs else client.get(url)


# Acknowledgement and survey mail, as the customer's server receives them

def test_a_portuguese_mailbox_acknowledges_in_portuguese_with_the_shop_name_and_an_encoded_subject(store, smtp_sink):
    settings = shop_settings("pt-BR")
    ticket = put(store, settings)
    [ack] = sent(smtp_sink, store, settings, T0 + timedelta(minutes=1))
    wire = headers_as_sent(smtp_sink.messages[0].raw)
    # Not ASCII: RFC 2047 encoded words on the wire, which decode to the Portuguese subject.
    assert "=?utf-8?" in wire["Subject"].lower() and "não" not in wire["Subject"]
    assert decoded(wire["Subject"]) == f"Re: {SUBJECT} [#{ticket}]"
    body = text_of(ack)
    assert body.startswith("Olá,\n") and f"Obrigado por escrever para {SHOP}." in body
    assert f'Recebemos a sua mensagem "{SUBJECT}" e abrimos o ticket [#{ticket}]' in body
    assert "Responderemos até segunda-feira, 02/11, às 14:00." in body  # 10:00 + 4 business hours
    assert "Esta é uma mensagem automática." in body and body.rstrip().endswith(SHOP)
    assert "mailticket" not in body.lower() and "Hello" not in body
    assert ack["Auto-Submitted"] == "auto-replied"


def test_an_english_mailbox_acknowledges_in_english(store, smtp_sink):
    settings = shop_settings("en", shop_name="Example Shop")
    ticket = put(store, settings, subject="Order 1234 is late")
    [ack] = sent(smtp_sink, store, settings, T0 + timedelta(minutes=1))
    assert decoded(headers_as_sent(smtp_sink.messages[0].raw)["Subject"]) == f"Re: Order 1234 is late [#{ticket}]"
    body = text_of(ack)
    assert body.startswith("Hello,\n") and "Thank you for writing to Example Shop." in body
    assert "We will answer by Monday, 2 November, 14:00." in body
    assert "Olá" not in body and "mailticket" not in body.lower()


def test_a_portuguese_mailbox_sends_the_survey_mail_in_portuguese(store, smtp_sink):
    settings = shop_settings("pt-BR", autoreply=AutoreplySettings(enabled=False))
    ticket = put(store, settings, sender="Ana Souza <ana@customer.example>")
    resolve(store, settings, ticket, T0 + timedelta(hours=2))
    messages = sent(smtp_sink, store, settings, T0 + timedelta(hours=2, minutes=1))
    [survey] = [m for m in messages if m["Auto-Submitted"] == "auto-generated"]
    [raw] = [m.raw for m in smtp_sink.messages if b"Auto-Submitted: auto-generated" in m.raw]
    wire = headers_as_sent(raw)
    assert "=?utf-8?" in wire["Subject"].lower()
    assert decoded(wire["Subject"]) == f"Resolvido: {SUBJECT} [#{ticket}]"
    body = text_of(survey)
    assert body.startswith("Olá, Ana Souza!\n") and f'Marcamos o ticket [#{ticket}] "{SUBJECT}" como resolvido.' in body
    assert "Como foi o nosso atendimento? Dê uma nota de 1 a 5" in body and "O link vale por 14 dias." in body
    assert LINK.search(body) and body.rstrip().endswith(SHOP) and "mailticket" not in body.lower()


def test_an_english_mailbox_sends_the_survey_mail_in_english_signed_with_the_from_name(store, smtp_sink):
    settings = shop_settings("en", shop_name="", autoreply=AutoreplySettings(enabled=False))
    ticket = put(store, settings, subject="Order 1234 is late")
    resolve(store, settings, ticket, T0 + timedelta(hours=2))
    messages = sent(smtp_sink, store, settings, T0 + timedelta(hours=2, minutes=1))
    [survey] = [m for m in messages if m["Auto-Submitted"] == "auto-generated"]
    assert str(survey["Subject"]) == f"Resolved: Order 1234 is late [#{ticket}]"
    body = text_of(survey)
    assert "How did we do? Please rate our help from 1 to 5" in body and "as resolved." in body
    # No [web] shop_name: the shop is called by its [smtp] from_name.
    assert body.rstrip().endswith(FROM_NAME) and "mailticket" not in body.lower()


def test_an_explicit_autoreply_template_is_used_whatever_the_mailbox_language(store):
    settings = shop_settings("pt-BR", autoreply=AutoreplySettings(template="ack_en.txt"))
    put(store, settings)
    with store.reading() as session:
        [text] = session.scalars(select(Message.text).join(Outbox, Outbox.message_id == Message.id)).all()
    assert text.startswith("Hello,\n") and "We will answer by Monday, 2 November, 14:00." in text


# The survey page

def test_the_survey_page_of_a_portuguese_mailbox_is_portuguese_and_shows_the_shop_name(store):
    settings = shop_settings("pt-BR", autoreply=AutoreplySettings(enabled=False))
    ticket = put(store, settings, subject="Tampa quebrada")
    resolved_at = T0 + timedelta(hours=2)
    resolve(store, settings, ticket, resolved_at)
    token = survey_token(store, ticket)
    later = resolved_at + timedelta(days=1)

    form = page(store, settings, f"/csat/{token}", now=later)
    assert form.status_code == 200 and '<html lang="pt-BR">' in form.text
    assert f"<title>Como foi o nosso atendimento? · {SHOP}</title>" in form.text
    assert element(form.text, "csat-shop") is not None and SHOP in element(form.text, "csat-shop")
    assert f"O ticket [#{ticket}] “Tampa quebrada” foi resolvido." in form.text
    assert "Comentário (opcional)" in form.text and ">Enviar</button>" in form.text
    assert "mailticket" not in form.text.lower() and "How did we do" not in form.text
    assert "set-cookie" not in form.headers

    wrong = page(store, settings, f"/csat/{token}", now=later, data={"token": token, "rating": "9"})
    assert wrong.status_code == 422 and "Escolha uma nota de 1" in wrong.text
    thanks = page(store, settings, f"/csat/{token}", now=later, data={"token": token, "rating": "5"})
    assert thanks.status_code == 200 and "Obrigado pela sua resposta!" in element(thanks.text, "csat-thanks")
    expired = page(store, settings, f"/csat/{token}", now=resolved_at + timedelta(days=15))
    assert expired.status_code == 410 and "expirou" in element(expired.text, "csat-refused")
    assert "era válido por 14 dias" in expired.text
    forged = page(store, settings, "/csat/not-a-token", now=later)
    assert forged.status_code == 400 and "não é válido" in element(forged.text, "csat-refused")


def test_the_survey_page_of_an_english_mailbox_is_english(store):
    settings = shop_settings("en", shop_name="Example Shop", autoreply=AutoreplySettings(enabled=False))
    ticket = put(store, settings, subject="Broken lid")
    resolve(store, settings, ticket, T0 + timedelta(hours=2))
    form = page(store, settings, f"/csat/{survey_token(store, ticket)}", now=T0 + timedelta(days=1))
    assert form.status_code == 200 and '<html lang="en">' in form.text and "How did we do?" in form.text
    assert "Example Shop" in element(form.text, "csat-shop") and "mailticket" not in form.text.lower()


# [templates] dir

def test_a_template_in_the_templates_dir_overrides_the_shipped_one(store, tmp_path):
    (tmp_path / "ack_pt.txt").write_text(
        "Subject: {{ shop }} recebeu a sua mensagem {{ tag }}\n\nOi! Já estamos vendo o seu pedido.\n"
        "{% if first_response_due %}Até {{ first_response_due | moment('pt') }}.{% endif %}\n", encoding="utf-8")
    (tmp_path / "csat.html").write_text('<p id="own">{{ text.heading }} {{ shop }} {{ ticket.tag }}</p>',
                                        encoding="utf-8")
    settings = shop_settings("pt-BR", templates=TemplateSettings(dir=str(tmp_path)))
    ticket = put(store, settings)
    with store.reading() as session:
        [message] = session.scalars(select(Message).join(Outbox, Outbox.message_id == Message.id)).all()
    assert message.subject == f"{SHOP} recebeu a sua mensagem [#{ticket}]"
    assert message.text == "Oi! Já estamos vendo o seu pedido.\nAté segunda-feira, 02/11, às 14:00."

    resolve(store, settings, ticket, T0 + timedelta(hours=2))
    shown = page(store, settings, f"/csat/{survey_token(store, ticket)}", now=T0 + timedelta(days=1))
    assert shown.text == f'<p id="own">Como foi o nosso atendimento? {SHOP} [#{ticket}]</p>'
    # What the folder does not hold is still the shipped template: the resolution mail.
    with store.reading() as session:
        survey = session.scalar(select(Message.text).join(Outbox, Outbox.message_id == Message.id)
                                .where(Outbox.kind == "notification"))
    assert "Como foi o nosso atendimento?" in survey


def check_config(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n'
                    '[[mailbox]]\nname = "support"\nhost = "imap.loja.example"\nusername = "u"\npassword = "p"\n'
                    'address = "suporte@loja.example"\nlanguage = "pt-BR"\n' + text, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "mailticket", "-c", str(path), "check-config"],
                          capture_output=True, text=True, timeout=120)


def test_check_config_accepts_the_shipped_templates_and_a_good_override(tmp_path):
    assert check_config(tmp_path, "").returncode == 0
    own = tmp_path / "templates"
    own.mkdir()
    (own / "resolved_pt.txt").write_text("Subject: Obrigado! {{ tag }}\n\nAvalie: {{ survey_url }}\n{{ shop }}\n")
    done = check_config(tmp_path, '[templates]\ndir = "templates"\n')
    assert done.returncode == 0, done.stderr


def test_check_config_names_a_missing_template(tmp_path):
    done = check_config(tmp_path, '[autoreply]\ntemplate = "minha_confirmacao.txt"\n')
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "minha_confirmacao.txt" in done.stderr and "the acknowledgement" in done.stderr
    no_folder = check_config(tmp_path, f'[templates]\ndir = "{tmp_path}/nowhere"\n')
    assert no_folder.returncode == 2 and f"{tmp_path}/nowhere" in no_folder.stderr


def test_check_config_names_a_broken_override_and_its_problem(tmp_path):
    own = tmp_path / "templates"
    own.mkdir()
    (own / "resolved_pt.txt").write_text("Olá!\n\nAvalie: {{ survey_link }}\n")
    (own / "ack_pt.txt").write_text("Olá!\n{% if first_response_due %}\nAté {{ first_response_due | moment('pt') }}\n")
    (own / "csat.html").write_text("<h1>{{ text.titulo }}</h1>")
    done = check_config(tmp_path, '[templates]\ndir = "templates"\n')
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert any(f"{own}/resolved_pt.txt" in line and "survey_link" in line for line in lines)
    assert any(f"{own}/ack_pt.txt" in line and "line" in line and "endif" in line for line in lines)
    assert any(f"{own}/csat.html" in line and "titulo" in line for line in lines)


# The promise

@pytest.mark.parametrize("language, promise", [
    ("pt-BR", "Responderemos até segunda-feira, 30/11, às 13:00."),
    ("en", "We will answer by Monday, 30 November, 13:00."),
])
def test_the_promise_is_the_first_response_due_time_of_the_sla_clock_on_the_local_calendar(
        store, smtp_sink, tmp_path, language, promise):
    path = tmp_path / "config.toml"
    path.write_text(
        '[[mailbox]]\nname = "support"\nhost = "imap.loja.example"\nusername = "u"\npassword = "p"\n'
        f'address = "{SUPPORT}"\nlanguage = "{language}"\n'
        f'[web]\nshop_name = "{SHOP}"\n'
        '[business_hours]\ntimezone = "America/Sao_Paulo"\n'
        + "".join(f'{day} = ["09:00-18:00"]\n' for day in ("mon", "tue", "wed", "thu", "fri"))
        + '[[sla]]\nname = "everyone"\nfirst_response = "4h"\n', encoding="utf-8")
    settings = load(path)
    assert settings.web.timezone == SAO_PAULO and settings.autoreply.template is None
    # Friday 27 November 2026, 19:30 in São Paulo: after hours; the clock starts Monday 09:00.
    friday_evening = datetime(2026, 11, 27, 22, 30, tzinfo=timezone.utc)
    ticket = put(store, settings, at=friday_evening)
    with store.reading() as session:
        due = session.get(Ticket, ticket).first_response_due_at
    assert due == datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)  # Monday 13:00 in São Paulo
    [ack] = sent(smtp_sink, store, settings, friday_evening + timedelta(minutes=1))
    body = text_of(ack)
    assert promise in body
    assert letters.promise(due.astimezone(ZoneInfo(SAO_PAULO)), language) in promise


def test_without_a_first_response_sla_there_is_no_promise(store):
    settings = shop_settings("pt-BR", sla=(SlaSettings(name="resolution only", resolution=86400),))
    put(store, settings)
    with store.reading() as session:
        text = session.scalar(select(Message.text).join(Outbox, Outbox.message_id == Message.id))
    assert "Responderemos" not in text and "abrimos o ticket [#1]" in text


def test_the_promise_is_never_earlier_than_the_due_time():
    due = datetime(2026, 11, 30, 13, 0, 1, tzinfo=ZoneInfo(SAO_PAULO))
    assert letters.promise(due, "pt-BR") == "segunda-feira, 30/11, às 13:01"
    assert letters.promise(due.replace(second=0), "en") == "Monday, 30 November, 13:00"


def test_without_a_template_setting_the_mailbox_language_picks_the_acknowledgement(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[mailbox]]\nname = "a"\nhost = "h"\nusername = "u"\npassword = "p"\naddress = "a@x.example"\n'
                    'language = "pt-BR"\n[[mailbox]]\nname = "b"\nhost = "h"\nusername = "u"\npassword = "p"\n'
                    'address = "b@x.example"\n', encoding="utf-8")
    settings = load(path)
    assert [letters.ack_template(settings, letters.language_of(settings, box)) for box in ("a", "b", None)] == [
        "ack_pt.txt", "ack_en.txt", "ack_pt.txt"]
    assert letters.shop_name(settings) == "Support"  # no shop_name: the [smtp] from_name
