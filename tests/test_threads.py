"""Tests for the threading rules of SPEC §5 (mailticket.threads), without a store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailticket import threads
from mailticket.threads import (
    DUPLICATE,
    IN_REPLY_TO,
    NEW,
    REFERENCES,
    SUBJECT,
    SUBJECT_TAG,
    Match,
    TicketTag,
    follow_up,
    match,
    subject_key,
)

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=timezone.utc)
CUSTOMER = "ana@example.com"
STRANGER = "eve@example.org"
CORPUS_CASES = (
    Path(__file__).resolve().parents[2]
    / "shared/corpus/stalwart-mail-parser/_derived/thread_name_cases.json"
)


class FakeLookup:
    """A store made of dicts that records every question it is asked."""

    def __init__(self, *, stored=(), messages=None, participants=None, subjects=None):
        self.stored = set(stored)
        self.messages = dict(messages or {})  # message id -> ticket id
        self.participants = dict(participants or {})  # ticket id -> addresses
        # (address, key) -> [(ticket id, last message at)], newest last
        self.subjects = dict(subjects or {})
        self.calls: list[tuple] = []

    def message_exists(self, message_id):
        self.calls.append(("message_exists", message_id))
        return message_id in self.stored

    def ticket_of_message(self, message_id):
        self.calls.append(("ticket_of_message", message_id))
        return self.messages.get(message_id)

    def takes_part(self, ticket_id, address):
        self.calls.append(("takes_part", ticket_id, address))
        return address in self.participants.get(ticket_id, ())

    def ticket_by_subject(self, address, subject_key, since):
        self.calls.append(("ticket_by_subject", address, subject_key, since))
        recent = [t for t, last in self.subjects.get((address, subject_key), []) if last > since]
        return recent[-1] if recent else None


def run(lookup, **given):
    args = dict(
        message_id="<new@mail.example.com>",
        in_reply_to=(),
        references=(),
        from_addr=CUSTOMER,
        subject="Printer on fire",
        tag=TicketTag(),
        now=NOW,
        subject_threading_days=7,
    )
    args.update(given)
    return match(lookup=lookup, **args)


def asked(lookup, method):
    return [call[1:] for call in lookup.calls if call[0] == method]


# match: rule 1, duplicates


def test_duplicates_stop_before_any_other_lookup():
    lookup = FakeLookup(stored={"<new@mail.example.com>"}, messages={"<a@x>": 1})
    result = run(lookup, in_reply_to=["<a@x>"], subject="[#1] Printer on fire")
    assert result == Match(DUPLICATE, None)
    assert lookup.calls == [("message_exists", "<new@mail.example.com>")]


def test_a_message_without_a_message_id_is_never_called_a_duplicate():
    lookup = FakeLookup(stored={""})
    assert run(lookup, message_id="").rule == NEW
    assert asked(lookup, "message_exists") == []


# match: rule 2, In-Reply-To and References


def test_a_reply_matched_only_by_references_joins_that_ticket():
    lookup = FakeLookup(messages={"<first@x>": 4})
    result = run(lookup, references=["<first@x>", "<lost@x>"])
    assert result == Match(REFERENCES, 4)


def test_in_reply_to_wins_over_references():
    lookup = FakeLookup(messages={"<parent@x>": 2, "<root@x>": 9})
    result = run(lookup, in_reply_to=["<parent@x>"], references=["<root@x>"])
    assert result == Match(IN_REPLY_TO, 2)
    assert asked(lookup, "ticket_of_message") == [("<parent@x>",)]


def test_references_are_tried_from_the_newest():
    lookup = FakeLookup(messages={"<old@x>": 1, "<newer@x>": 3})
    result = run(lookup, references=["<old@x>", "<newer@x>", "<unknown@x>"])
    assert result == Match(REFERENCES, 3)
    assert asked(lookup, "ticket_of_message") == [("<unknown@x>",), ("<newer@x>",)]


def test_an_id_in_both_headers_counts_as_in_reply_to_and_is_asked_once():
    lookup = FakeLookup(messages={"<p@x>": 5})
    result = run(lookup, in_reply_to=["<p@x>"], references=["<p@x>"])
    assert result == Match(IN_REPLY_TO, 5)
    lookup = FakeLookup()
    run(lookup, in_reply_to=["<p@x>"], references=["<p@x>", "<p@x>"])
    assert asked(lookup, "ticket_of_message") == [("<p@x>",)]


def test_a_message_whose_references_form_a_loop_is_not_matched_to_itself():
    me = "<new@mail.example.com>"
    # Even if the store somehow knew the message's own id, it must not be asked about it.
    lookup = FakeLookup(messages={me: 8})
    result = run(lookup, in_reply_to=[me], references=[me, "<a@x>", me, "<a@x>"] * 50)
    assert result == Match(NEW, None)
    assert asked(lookup, "ticket_of_message") == [("<a@x>",)]


def test_only_the_newest_references_are_looked_up():
    refs = [f"<{n}@x>" for n in range(500)]
    lookup = FakeLookup(messages={"<0@x>": 1})
    assert run(lookup, references=refs).rule == NEW
    looked_up = asked(lookup, "ticket_of_message")
    assert len(looked_up) == threads.MAX_ID_LOOKUPS
    assert looked_up[0] == ("<499@x>",)


def test_blank_ids_in_headers_are_not_looked_up():
    lookup = FakeLookup()
    run(lookup, in_reply_to=[""], references=["  ", ""])
    assert asked(lookup, "ticket_of_message") == []


# match: rule 3, the subject tag


def test_a_participant_quoting_the_tag_joins_that_ticket():
    lookup = FakeLookup(participants={12: {CUSTOMER}})
    assert run(lookup, subject="Re: [#12] Printer on fire") == Match(SUBJECT_TAG, 12)


def test_a_stranger_quoting_a_ticket_tag_gets_a_new_ticket():
    lookup = FakeLookup(
        participants={12: {CUSTOMER}}, subjects={(CUSTOMER, "printer on fire"): [(12, NOW)]}
    )
    result = run(lookup, from_addr=STRANGER, subject="Fwd: [#12] Printer on fire")
    assert result == Match(NEW, None)
    assert asked(lookup, "takes_part") == [(12, STRANGER)]
    # The stranger falls through to rule 4, asked about their own tickets only.
    assert asked(lookup, "ticket_by_subject")[0][:2] == (STRANGER, "printer on fire")


def test_a_custom_tag_template_is_found_and_stripped_from_the_key():
    lookup = FakeLookup(participants={7: {CUSTOMER}})
    tag = TicketTag("(Case {id})")
    assert run(lookup, tag=tag, subject="RE: Printer (case 7)") == Match(SUBJECT_TAG, 7)
    lookup = FakeLookup()
    run(lookup, tag=tag, from_addr=STRANGER, subject="RE: Printer (case 7)")
    assert asked(lookup, "ticket_by_subject")[0][1] == "printer"


# match: rule 4, the subject


def test_res_and_aw_replies_without_headers_join_by_subject():
    lookup = FakeLookup(subjects={(CUSTOMER, "printer on fire"): [(3, NOW - timedelta(days=1))]})
    for subject in ("RES: Printer on fire", "AW: Printer on fire", "Res: aw: Printer  on FIRE"):
        assert run(lookup, subject=subject) == Match(SUBJECT, 3)


def test_the_same_subject_from_another_sender_gets_a_new_ticket():
    lookup = FakeLookup(subjects={(CUSTOMER, "printer on fire"): [(3, NOW)]})
    assert run(lookup, from_addr=STRANGER, subject="Re: Printer on fire") == Match(NEW, None)


def test_subject_rule_ignores_tickets_older_than_the_window():
    lookup = FakeLookup(subjects={(CUSTOMER, "printer on fire"): [(3, NOW - timedelta(days=8))]})
    assert run(lookup, subject="Re: Printer on fire") == Match(NEW, None)
    assert asked(lookup, "ticket_by_subject")[0][2] == NOW - timedelta(days=7)


@pytest.mark.parametrize(
    "subject",
    ["Hello", "RE: help!", "Pedido", "Olá", "(no subject)", "Sem assunto", "", "Re:", "[#4]", "?!"],
)
def test_generic_subjects_never_thread_by_subject(subject):
    lookup = FakeLookup(subjects={(CUSTOMER, subject_key(subject)): [(3, NOW)]})
    assert run(lookup, subject=subject) == Match(NEW, None)
    assert asked(lookup, "ticket_by_subject") == []


def test_mail_without_a_sender_never_threads_by_subject():
    lookup = FakeLookup(subjects={("", "printer on fire"): [(3, NOW)]})
    assert run(lookup, from_addr="") == Match(NEW, None)
    assert asked(lookup, "ticket_by_subject") == [] and asked(lookup, "takes_part") == []


def test_a_window_of_zero_days_switches_the_subject_rule_off():
    lookup = FakeLookup(subjects={(CUSTOMER, "printer on fire"): [(3, NOW)]})
    assert run(lookup, subject_threading_days=0) == Match(NEW, None)
    assert asked(lookup, "ticket_by_subject") == []


def test_a_new_message_asks_each_rule_once_in_order():
    lookup = FakeLookup()
    assert run(lookup, in_reply_to=["<p@x>"], subject="Re: [#5] Printer") == Match(NEW, None)
    assert [call[0] for call in lookup.calls] == [
        "message_exists", "ticket_of_message", "takes_part", "ticket_by_subject"
    ]


# subject_key

OWN_CASES = [
    ("Re: Hello there", "hello there"),
    ("RE: RES: Fwd: Pedido 42", "pedido 42"),
    ("Re[2]: Invoice", "invoice"),
    ("Re(3): Invoice", "invoice"),
    ("Re^2: Invoice", "invoice"),
    ("Re： Invoice", "invoice"),
    ("ＲＥ：Invoice", "invoice"),
    ("[support] Re: [support] AW: Invoice", "invoice"),
    ("Enc: ENC: Nota fiscal", "nota fiscal"),
    ("WG: SV: VS: Antw: Rif: TR: RV: Invoice", "invoice"),
    ("Antwort: Odp: PD: YNT: İLT: ATB: Vá: Invoice", "invoice"),
    ("Réf : Réponse : Invoice", "invoice"),
    ("回复: 转发: 发票", "发票"),
    ("答复：轉寄：回覆: 发票", "发票"),
    ("Re: [#123] Printer   on fire", "printer on fire"),
    ("Printer on fire [Ticket #9]", "printer on fire"),
    ("Invoice (fwd)", "invoice"),
    ("re: fwd[9]: [hello world]", "[hello world]"),
    ("[fwd: hello world]", "hello world"),
    ("Research: results", "research: results"),
    ("Fwd:", ""),
]


# A sample of stalwart mail-parser's thread_name cases (Apache-2.0 OR MIT), kept
# here so the project's coverage does not depend on the shared corpus.
STALWART_CASES = [
    ("re:re: hello", "hello"),
    ("fwd[5]:re[5]: hello", "hello"),
    ("fwd[a]: hello", "hello"),
    ("z: hello", "z: hello"),
    ("re:: hello", ": hello"),
    ("[10] hello", "hello"),
    ("回复: 轉寄: 轉寄", "轉寄"),
    ("aw[50]: wg: aw[1]: hallo", "hallo"),
    ("res: rv: enc: továbbítás: ", ""),
    ("re: enc: re[5]: [fwd: hello world]", "hello world"),
    ("[fwd: hello world]: another text", ": another text"),
    ("[fwd hello] world hello", "world hello"),
    (" [hello] [world] ", "[hello] [world]"),
    ("[hello [world]", "[hello [world]"),
    ("[mailing-list] wg[8]:re:  hello world (fwd)(fwd)", "hello world"),
    ("res: rv: enc: továbbítás: hello world (doorst)", "hello world"),
    ("hello () (fwd) ()(fwd)", "hello () (fwd) ()"),
    ("你好世界 (回覆)", "你好世界"),
    ("hello(fwd))", "hello(fwd))"),
]


@pytest.mark.parametrize("subject, expected", OWN_CASES + STALWART_CASES)
def test_subject_key_strips_prefixes_tags_and_trailers(subject, expected):
    assert subject_key(subject) == expected


def test_the_subject_key_fits_the_database_column():
    assert len(subject_key("x" * 5000)) == threads.MAX_KEY_CHARS


def test_subject_key_strips_a_long_stack_of_prefixes_and_trailers():
    assert subject_key("Re: [list] " * 150 + "Invoice" + " (fwd)" * 100) == "invoice"


@pytest.mark.skipif(not CORPUS_CASES.exists(), reason="shared corpus not present")
def test_subject_key_agrees_with_the_stalwart_thread_name_cases():
    cases = json.loads(CORPUS_CASES.read_text(encoding="utf-8"))
    failures = [c for c in cases if subject_key(c["input"]) != c["expected"].casefold()]
    assert cases and failures == []


# TicketTag


def test_the_default_tag_renders_and_is_found_again():
    tag = TicketTag()
    assert tag.render(7) == "[#7]"
    assert tag.find(f"Re: {tag.render(7)} Printer") == 7


def test_the_first_tag_in_a_subject_wins():
    assert TicketTag().find("Re: [#3] about [#4]") == 3


def test_a_tag_is_found_whatever_the_case_of_its_letters():
    assert TicketTag("[Ticket-{id}]").find("RE: [TICKET-41] printer") == 41


@pytest.mark.parametrize(
    "subject", ["Printer", "[# 7]", "[#]", "[#7", "#7", "[#x7]", "[#" + "9" * 30 + "]"]
)
def test_things_that_are_not_the_tag_are_not_found(subject):
    assert TicketTag().find(subject) is None


def test_a_template_without_a_closing_part_reads_the_whole_number():
    tag = TicketTag("Ticket #{id}")
    assert tag.find("Re: ticket #1234 printer") == 1234
    assert tag.find("Re: Ticket #" + "9" * 30) is None


def test_regex_characters_in_a_template_are_taken_literally():
    tag = TicketTag("(.*{id}+)")
    assert tag.find("Re: (.*5+) x") == 5
    assert tag.find("Re: (ab5b) x") is None


def test_strip_removes_every_tag_and_tidies_spaces():
    assert TicketTag().strip("Re: [#7] Printer [#7]  on fire") == "Re: Printer on fire"


@pytest.mark.parametrize("template", ["[#]", "[#{id}] {id}", "{id}", " {id} ", "[#{ID}]"])
def test_an_invalid_template_is_refused_with_a_clear_message(template):
    with pytest.raises(ValueError, match=r"\{id\}"):
        TicketTag(template)


# follow_up


@pytest.mark.parametrize("status", ["open", "pending"])
def test_mail_on_an_unresolved_ticket_is_appended(status):
    assert follow_up(status, None, NOW, 14) == "append"


def test_mail_on_a_recently_resolved_ticket_reopens_it():
    assert follow_up("resolved", NOW - timedelta(days=14), NOW, 14) == "reopen"
    assert follow_up("resolved", NOW - timedelta(minutes=1), NOW, 14) == "reopen"


def test_mail_after_the_reopen_window_opens_a_new_linked_ticket():
    assert follow_up("resolved", NOW - timedelta(days=14, seconds=1), NOW, 14) == "new-linked"


def test_a_resolved_ticket_without_a_resolution_time_is_not_reopened():
    assert follow_up("resolved", None, NOW, 14) == "new-linked"
