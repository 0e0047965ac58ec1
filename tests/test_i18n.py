"""The operator pages in pt-BR and English: the catalog covers every message the code and templates show, the
language is chosen operator > browser > [web] language > English, and in Chromium a Brazilian browser sees no
English word of the catalog on the pages it works with."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from playwright.sync_api import Page, expect

from mailticket import i18n
from mailticket.config_values import LANGUAGES
from mailticket.db.store import Store
from mailticket.service import operators
from mailticket.web.app import create_app
from tests.browser import login
from tests.factories import WEB_SETTINGS, make_operator, make_ticket
from tests.test_web import Browser

ROOT = Path(__file__).resolve().parent.parent
POT = ROOT / "mailticket" / "locales" / "messages.pot"
UPDATE_HOW = "see the README's Languages section: pybabel extract, then pybabel update, then translate"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")
# Where a msgid is cut into the words a reader sees: placeholders, a literal %, markup.
NOT_WORDS = re.compile(r"%\(\w+\)[sdr]|%%|<[^>]+>")
# Words of the catalog that may stand on a Portuguese page: the same in both languages, or data that happens to be
# spelled like one (none yet).
SAME_IN_BOTH = frozenset({"Spam", "spam", "E-mail", "Login", "Status", "status", "normal", "oauth2", "SMTP", "CSRF"})
PT_BROWSER = {"locale": "pt-BR", "extra_http_headers": {"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.5"}}


def key(message) -> tuple:
    return (message.id, message.context)


def extracted() -> Catalog:
    """What `pybabel extract -F babel.cfg .` finds now in the code and the templates."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    catalog = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(str(ROOT), method_map, options_map):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=locale)


def forms(value) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


@pytest.fixture(scope="module")
def portuguese() -> Catalog:
    return read(i18n.catalog_path("pt-BR"), "pt_BR")


# -- the catalog ---------------------------------------------------------------------------------------------------

def test_the_pot_holds_exactly_the_messages_the_code_and_templates_show_now():
    now = {key(m) for m in extracted() if m.id}
    kept = {key(m) for m in read(POT) if m.id}
    assert now - kept == set(), f"messages missing from {POT.name} ({UPDATE_HOW})"
    assert kept - now == set(), f"messages in {POT.name} that nothing shows any more ({UPDATE_HOW})"
    assert len(now) > 300  # the walk found the templates and the Python side


def test_every_message_has_a_portuguese_translation_that_keeps_its_placeholders(portuguese):
    translations = {key(m): m for m in portuguese if m.id}
    untranslated, broken = [], []
    for message in (m for m in extracted() if m.id):
        found = translations.get(key(message))
        if found is None or found.fuzzy or not all(form.strip() for form in forms(found.string)):
            untranslated.append(message.id)
            continue
        wanted = set(PLACEHOLDER.findall(" ".join(forms(message.id))))
        if any(set(PLACEHOLDER.findall(form)) != wanted - {"num"} and set(PLACEHOLDER.findall(form)) != wanted
               for form in forms(found.string)):
            broken.append(message.id)
    assert untranslated == [], f"no pt-BR translation (or a fuzzy one) for these ({UPDATE_HOW})"
    assert broken == [], "these translations lose or add a %(name)s placeholder"
    obsolete = set(translations) - {key(m) for m in extracted() if m.id}
    assert obsolete == set(), "the pt-BR catalog keeps messages nothing shows any more (pybabel update drops them)"


def test_the_catalog_is_compiled_from_the_po_at_first_use_and_english_needs_none():
    assert i18n.translate("pt-BR", "Queue") == "Fila"
    assert i18n.translate("pt-BR", "Claimed until %(time)s", time="14:32") == "Assumido até 14:32"
    assert i18n.translate("en", "Claimed until %(time)s", time="2:32 PM") == "Claimed until 2:32 PM"
    assert i18n.translations("pt-BR") is i18n.translations("pt-BR")
    assert not any(i18n.LOCALES.rglob("*.mo")), "no compiled catalog is kept: it could go stale"
    with pytest.raises(ValueError):
        i18n.translations("fr")


def test_plural_messages_pick_the_portuguese_form_for_the_number():
    one = "%(count)s message could not become a ticket and is in quarantine; an admin can look at it."
    many = "%(count)s messages could not become a ticket and are in quarantine; an admin can look at them."
    assert i18n.translate_plural("pt-BR", one, many, 1, count=1).startswith("1 mensagem não pôde")
    assert i18n.translate_plural("pt-BR", one, many, 3, count=3).startswith("3 mensagens não puderam")
    assert i18n.translate_plural("en", one, many, 3, count=3).startswith("3 messages could not")


# -- which language ------------------------------------------------------------------------------------------------

def test_the_operators_own_choice_wins_over_the_browser_and_the_setting():
    assert i18n.negotiate("en", "pt-BR,pt;q=0.9", "pt-BR") == "en"
    assert i18n.negotiate("pt-BR", "en-US,en;q=0.9", "en") == "pt-BR"


def test_without_a_choice_the_browsers_most_wanted_known_language_wins():
    assert i18n.negotiate(None, "pt-BR,pt;q=0.9,en;q=0.8", "en") == "pt-BR"
    assert i18n.negotiate(None, "en-GB,en;q=0.9", "pt-BR") == "en"
    assert i18n.negotiate(None, "de-DE, en;q=0.3, pt;q=0.7", "en") == "pt-BR"  # q-values, not the order
    assert i18n.negotiate(None, "pt;q=0.5, en;q=0.5", "pt-BR") == "pt-BR"  # a tie: the first named


def test_every_portuguese_the_browser_names_is_brazilian_portuguese():
    for header in ("pt", "pt-BR", "pt-PT", "PT-br", "pt_BR"):
        assert i18n.negotiate(None, header, "en") == "pt-BR", header
    for header in ("en", "en-US", "en-GB", "EN-au"):
        assert i18n.negotiate(None, header, "pt-BR") == "en", header


def test_unknown_languages_and_refusals_are_skipped_for_the_next():
    assert i18n.negotiate(None, "fr-FR, de;q=0.9, en;q=0.1", "pt-BR") == "en"
    assert i18n.negotiate(None, "pt;q=0, en", "pt-BR") == "en"  # q=0: "not Portuguese"
    assert i18n.negotiate(None, "pt;q=abc, en;q=0.2", "pt-BR") == "en"  # a broken q counts as 0


def test_with_nothing_the_browser_names_known_the_setting_decides_and_then_english():
    assert i18n.negotiate(None, "fr-FR,de;q=0.9,*;q=0.1", "pt-BR") == "pt-BR"
    assert i18n.negotiate(None, None, "pt-BR") == "pt-BR"
    assert i18n.negotiate(None, "", "en") == "en"
    assert i18n.negotiate(None, "fr", None) == "en"
    assert i18n.negotiate("klingon", "xx", "yy") == "en"
    assert set(LANGUAGES) == {"pt-BR", "en"}


def test_a_huge_accept_language_header_is_read_only_so_far():
    header = ",".join(["fr"] * 5000) + ",pt-BR"
    assert i18n.negotiate(None, header, "en") == "en"


# -- in-process: the setting, the API ------------------------------------------------------------------------------

@pytest.fixture
def pt_app(store):
    settings = dataclasses.replace(WEB_SETTINGS, web=dataclasses.replace(WEB_SETTINGS.web, language="pt-BR"))
    return create_app(settings, store)


def test_a_browser_asking_for_an_unknown_language_gets_the_configured_one(pt_app, store):
    make_operator(store, "ana")
    browser = Browser(pt_app)
    browser.client.headers["Accept-Language"] = "de-DE,de;q=0.9"
    assert browser.log_in("ana").status_code == 303
    page = browser.get("/").text
    assert '<html lang="pt-BR">' in page and ">Fila</a>" in page and ">Sair</button>" in page
    english = Browser(pt_app)
    english.client.headers["Accept-Language"] = "en-US,en;q=0.9"
    assert '<html lang="en">' in english.get("/login").text


def test_error_pages_speak_the_page_language_and_the_json_api_stays_english(pt_app, store):
    make_operator(store, "ana")
    browser = Browser(pt_app)
    assert browser.log_in("ana").status_code == 303
    missing = browser.get("/tickets/999999")
    assert missing.status_code == 404 and "não existe o chamado 999999" in missing.text
    assert "Não encontrado" in browser.get("/no/such/page").text
    api = browser.get("/api/v1/tickets", headers={"Accept-Language": "pt-BR"})
    assert api.status_code == 401 and api.json()["detail"].isascii()


def test_flash_messages_speak_the_operators_language(pt_app, store):
    ticket = make_ticket(store, subject="Pedido atrasado")
    make_operator(store, "ana")
    browser = Browser(pt_app)
    assert browser.log_in("ana").status_code == 303
    browser.fresh_token(f"/tickets/{ticket}")
    assert browser.post(f"/tickets/{ticket}/claim").status_code == 303
    assert "Assumido até" in browser.get(f"/tickets/{ticket}").text
    refused = browser.post(f"/tickets/{ticket}/merge", {"into": "x"})
    assert refused.status_code == 403 and "só um administrador pode mesclar chamados" in refused.text


def test_choosing_a_language_on_my_account_answers_in_it_at_once(app, store):
    make_operator(store, "bruno")
    browser = Browser(app)
    browser.client.headers["Accept-Language"] = "en-US,en;q=0.9"
    assert browser.log_in("bruno").status_code == 303
    browser.fresh_token("/account")
    assert browser.post("/account/language", {"language": "pt-BR"}).status_code == 303
    page = browser.get("/account").text
    assert '<html lang="pt-BR">' in page and "Idioma salvo: Português (Brasil)" in page
    assert browser.post("/account/language", {"language": ""}).status_code == 303
    page = browser.get("/account").text
    assert '<html lang="en">' in page and "Language saved: Browser default" in page


# -- in Chromium ---------------------------------------------------------------------------------------------------

def english_words(catalog: Catalog) -> set[str]:
    """The English words of each message whose Portuguese differs: its text between placeholders and markup."""
    words = set()
    for message in (m for m in catalog if m.id):
        portuguese = " ".join(forms(message.string))
        for msgid in forms(message.id):
            if msgid in forms(message.string):
                continue
            for piece in NOT_WORDS.split(msgid):
                piece = piece.strip(" .,:;()“”'\"#→←")
                if len(piece) > 3 and piece not in portuguese and piece not in SAME_IN_BOTH:
                    words.add(piece)
    return words


# What a person reads on the page: its text (less commands, message bodies and typed text, which are no words of
# the pages), the menus' choices, the tooltips, placeholders and labels for screen readers, and the title.
# It changes the page: call it last on each page.
READ_BY_A_PERSON = """() => {
  document.querySelectorAll("code, pre, textarea").forEach(e => e.remove());
  const said = [...document.querySelectorAll("[title], [placeholder], [aria-label]")]
    .flatMap(e => ["title", "placeholder", "aria-label"].map(a => e.getAttribute(a)).filter(Boolean));
  const choices = [...document.querySelectorAll("option")].map(e => e.textContent);
  return [document.body.innerText, document.title, ...said, ...choices].join("\\n");
}"""


def english_on(page: Page, words: set[str]) -> list[str]:
    text = page.evaluate(READ_BY_A_PERSON)
    return sorted(w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text))


def looks_portuguese(page: Page, words: set[str]) -> None:
    assert page.locator("html").get_attribute("lang") == "pt-BR", page.url
    assert english_on(page, words) == [], page.url


def test_in_chromium_a_brazilian_browser_sees_every_page_in_portuguese(sqlite_url, serve_app, new_context,
                                                                       fast_passwords, portuguese):
    store = Store(sqlite_url)
    words = english_words(portuguese)
    assert {"Claim to reply", "Queue", "Log out"} <= words  # the scan looks for the real msgids
    ticket = make_ticket(store, sender="cliente@loja.example", subject="Pedido atrasado",
                         body="Olá, meu pedido 1234 ainda não chegou.")
    make_ticket(store, sender="outra@loja.example", subject="Troca de tamanho", message_id="m2@loja.example")
    make_operator(store, "ana", admin=True, name="Ana")
    base_url = serve_app(WEB_SETTINGS, store)
    context = new_context(base_url, **PT_BROWSER)

    page = context.new_page()
    page.goto(f"{base_url}/login")
    expect(page.locator("#login-button")).to_have_text("Entrar")
    looks_portuguese(page, words)
    login(page, base_url, "ana")
    expect(page.locator("#queue-table")).to_contain_text("Pedido atrasado")
    expect(page.locator("#logout-button")).to_have_text("Sair")
    looks_portuguese(page, words)

    page.goto(f"{base_url}/tickets/{ticket}")
    expect(page.locator("#claim-button")).to_have_text("Assumir para responder")
    looks_portuguese(page, words)
    page.click("#claim-button")
    expect(page.locator("#flash")).to_contain_text("Assumido até")
    expect(page.locator("#reply-form")).to_be_visible()
    expect(page.locator("#release-button")).to_have_text("Liberar")
    expect(page.locator("#claim-countdown")).to_have_text(re.compile(r"^O chamado fica com você por mais 1?\d:\d\d\.$"))
    page.fill("#note-body", "Cliente ligou também.")
    page.click("#note-add")
    expect(page.locator("#flash")).to_contain_text("Nota adicionada")
    expect(page.locator("#ticket-status")).to_have_text("aberto")
    looks_portuguese(page, words)

    for path in ("/", "/?view=mine", "/?view=all", "/customers/1", "/report", "/search?q=pedido",
                 "/search?q=nada-encontrado", "/admin", "/admin/operators", "/admin/canned", "/admin/quarantine",
                 "/admin/mailboxes", "/account", "/tickets/424242"):
        page.goto(base_url + path)
        looks_portuguese(page, words)
    page.goto(f"{base_url}/search?q=pedido")
    expect(page.locator("#search-results")).to_contain_text("Pedido atrasado")
    store.dispose()


def test_in_chromium_an_operator_who_chose_english_sees_english_whatever_the_browser_says(
        sqlite_url, serve_app, new_context, fast_passwords):
    store = Store(sqlite_url)
    ticket = make_ticket(store, subject="Pedido atrasado")
    make_operator(store, "john")
    with store.transaction() as session:
        operators.set_language(session, "john", "en")
    base_url = serve_app(WEB_SETTINGS, store)
    page = new_context(base_url, **PT_BROWSER).new_page()
    page.goto(f"{base_url}/login")
    expect(page.locator("#login-button")).to_have_text("Entrar")  # nobody is known before the login
    login(page, base_url, "john")
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator("#logout-button")).to_have_text("Log out")
    page.goto(f"{base_url}/tickets/{ticket}")
    expect(page.locator("#claim-button")).to_have_text("Claim to reply")
    page.click("#claim-button")
    expect(page.locator("#flash")).to_contain_text("Claimed until")
    expect(page.locator("#ticket-status")).to_have_text("open")
    store.dispose()


def test_the_mail_that_tells_the_admins_to_authorize_again_is_in_each_admins_language():
    from mailticket.config import Settings
    from mailticket.service import auth_notice, tokens

    mailbox = tokens.Authorization("mailbox:support", None, "support@shop.example")
    assert auth_notice.notice_subject(mailbox) == "mailticket: mailbox 'support' needs authorization again"
    assert auth_notice.notice_subject(mailbox, "pt-BR") == "mailticket: caixa 'support' precisa de nova autorização"
    text = auth_notice.notice_text(Settings(), mailbox, "invalid_grant", "pt-BR")
    assert "O provedor respondeu: invalid_grant" in text and "clique em Reautorizar" in text


def test_any_placeholder_name_may_be_used_even_language_or_message():
    assert i18n.translate("pt-BR", "Language saved: %(language)s", language="English") == "Idioma salvo: English"
    assert i18n.translate("en", "%(message)s", message="x") == "x"
