"""Parsing raw mail into `Inbound`: ids, addresses, text, sanitised HTML, attachments, and bad mail."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailticket.mail.parse import parse

FIXTURES = Path(__file__).parent / "fixtures" / "mail"


def fixture(name: str):
    return parse((FIXTURES / name).read_bytes())


def mail(*headers: str, body: str = "Hello", encoding: str = "utf-8"):
    """A message from header lines and a body, CRLF-terminated as on the wire."""
    return parse(("\r\n".join(headers) + "\r\n\r\n" + body).encode(encoding))


# Ids


def test_a_missing_message_id_gets_a_stable_synthetic_id():
    raw = b"From: ana@example.com\r\nSubject: no id\r\n\r\nHello"
    first, second = parse(raw), parse(raw)
    assert first.synthetic_id
    assert first.message_id == f"{hashlib.sha256(raw).hexdigest()}@synthetic.mailticket"
    assert second.message_id == first.message_id


def test_an_empty_message_id_counts_as_missing():
    assert mail("Message-ID: <>", "From: a@example.com").synthetic_id


def test_the_message_id_loses_its_angle_brackets():
    msg = mail("Message-ID: <abc.def@example.org>")
    assert (msg.message_id, msg.synthetic_id) == ("abc.def@example.org", False)


def test_a_message_id_without_brackets_is_tolerated():
    assert mail("Message-ID: abc.def@example.org").message_id == "abc.def@example.org"


def test_references_keep_their_order_and_drop_duplicates():
    msg = mail("Message-ID: <c@x>", "References: <a@x>\r\n\t<b@x> <a@x>")
    assert msg.references == ("a@x", "b@x")


def test_a_message_naming_itself_in_its_references_does_not_become_its_own_parent():
    msg = mail("Message-ID: <b@b>", "References: <a@b> <b@b>", "In-Reply-To: <b@b>")
    assert msg.references == ("a@b",)
    assert msg.in_reply_to == ()


def test_in_reply_to_with_a_comment_yields_only_the_id():
    msg = mail('In-Reply-To: <x1@example.com> (Ana\'s message of "Tue, 1 Oct 2024")')
    assert msg.in_reply_to == ("x1@example.com",)


def test_in_reply_to_in_words_yields_no_ids():
    assert mail("In-Reply-To: Your message of Tue, 1 Oct 2024 10:00:00").in_reply_to == ()


def test_references_without_brackets_are_tolerated():
    assert mail("References: a@x b@x").references == ("a@x", "b@x")


# Addresses, subject, date


def test_addresses_are_lower_cased_addr_specs():
    msg = mail(
        "From: Ana Silva <Ana.Silva@Example.COM>",
        'To: Support <Support@Shop.example>, "Doe, John" <JOHN@example.org>',
        "Cc: carol@EXAMPLE.net",
        "Reply-To: <Replies@Example.com>",
    )
    assert (msg.from_addr, msg.from_name) == ("ana.silva@example.com", "Ana Silva")
    assert msg.to_addrs == ("support@shop.example", "john@example.org", "carol@example.net")
    assert msg.reply_to == "replies@example.com"


def test_an_rfc2047_encoded_from_name_is_decoded():
    msg = mail("From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>")
    assert msg.from_name == "Jürgen Müller"


@pytest.mark.parametrize(
    "header",
    [
        'From: "=?iso-8859-1?q?Andr=E9_Pirard?=" <pirard@example.be>',  # encoded word inside quotes
        "From: =?iso-8859-1?q?Andr=E9 Pirard?= <pirard@example.be>",  # a space inside the word
        "From: =?utf-8?q?Andr=E9_Pirard?= <pirard@example.be>",  # Latin-1 bytes under a UTF-8 label
    ],
)
def test_a_badly_encoded_from_name_is_still_decoded(header):
    assert mail(header).from_name == "André Pirard"


@pytest.mark.parametrize("separator", [" ", "\r\n ", ""])
def test_a_multibyte_character_split_across_encoded_words_is_joined(separator):
    # "日本" in UTF-8 is e6 97 a5 e6 9c ac; the sender split the bytes of the first character.
    msg = mail(f"Subject: =?utf-8?b?5pc=?={separator}=?utf-8?b?peacrA==?=")
    assert msg.subject == "日本"


def test_text_between_encoded_words_keeps_its_spaces():
    assert mail("Subject: =?utf-8?q?caf=C3=A9?= and =?utf-8?q?cr=C3=A8me?=").subject == "café and crème"


def test_utf7_cannot_smuggle_lone_surrogates_into_text_or_html():
    # "+2D0-" is UTF-7 for a lone high surrogate, which neither PostgreSQL nor nh3 accepts.
    raw = b"Content-Type: text/html; charset=utf-7\r\nSubject: =?utf-7?q?+2D0-?=\r\n\r\n<p>a+2D0-b</p>"
    msg = parse(raw)
    for value in (msg.subject, msg.text, msg.html):
        value.encode("utf-8")
    assert msg.text == "a?b"


def test_escape_codecs_are_not_taken_for_charsets():
    raw = b"Content-Type: text/plain; charset=unicode_escape\r\n\r\nC:\\new\\table"
    msg = parse(raw)
    assert msg.text == "C:\\new\\table"
    assert "unknown charset unicode_escape" in msg.defects


def test_raw_8bit_text_inside_an_encoded_word_is_read_in_the_words_charset():
    assert fixture("eudora-8bit-encoded-word.eml").subject == "Die Hasen und die Frösche"


def test_raw_latin1_headers_are_read_as_windows_1252():
    msg = fixture("raw-latin1-headers.eml")
    assert msg.subject == "Die Hasen und die Frösche"
    assert msg.attachments[0].filename == "Hasen und Frösche.txt"


def test_a_sender_without_an_address_has_a_name_only():
    msg = mail("From: Whomever")
    assert (msg.from_addr, msg.from_name) == ("", "Whomever")


def test_a_null_return_path_is_an_empty_string_and_a_missing_one_none():
    assert mail("Return-Path: <>").return_path == ""
    assert mail("Return-Path: <Bounces@Example.com>").return_path == "bounces@example.com"
    assert mail("From: a@example.com").return_path is None


def test_the_subject_is_decoded_unfolded_and_whitespace_collapsed():
    msg = mail("Subject:   Order\r\n   =?utf-8?q?=C3=BCberf=C3=A4llig?=\t [#123]  ")
    assert msg.subject == "Order überfällig [#123]"


def test_the_date_is_timezone_aware():
    msg = mail("Date: Tue, 1 Oct 2024 09:59:58 +0200")
    assert msg.date == datetime(2024, 10, 1, 9, 59, 58, tzinfo=timezone(timedelta(hours=2)))


def test_a_date_without_a_known_zone_is_taken_as_utc():
    assert mail("Date: Tue, 1 Oct 2024 09:59:58 -0000").date == datetime(2024, 10, 1, 9, 59, 58, tzinfo=timezone.utc)


def test_an_unparseable_date_is_none_with_a_defect():
    msg = mail("Date: sometime last week")
    assert msg.date is None
    assert "unparseable Date" in msg.defects


def test_of_repeated_dates_the_first_that_parses_wins():
    assert fixture("multipart-without-boundary.eml").date == datetime(2026, 4, 7, 10, 0, 1, tzinfo=timezone.utc)


def test_headers_are_lower_cased_decoded_and_in_order():
    msg = mail("X-First: 1", "Subject: =?utf-8?q?caf=C3=A9?=", "X-First: 2")
    assert msg.headers == (("x-first", "1"), ("subject", "café"), ("x-first", "2"))
    assert msg.header("X-FIRST") == "1"


# Header blocks the stdlib parser would cut short


def test_a_space_before_a_header_colon_does_not_end_the_header_block():
    msg = fixture("obsolete-field-name.eml")
    assert (msg.from_addr, msg.subject) == ("multi@example.test", "Sprint 3 multipart fixture")


def test_stray_lines_in_the_header_block_do_not_lose_the_headers_after_them():
    msg = fixture("stray-header-lines.eml")
    assert (msg.from_addr, msg.subject, msg.message_id) == ("stray@example.com", "Still here", "4D6AA7EB.6490534@example.com")


def test_a_space_before_the_colon_of_the_last_header_is_mended_too():
    assert mail("To: support@example.com", "Subject : Refund").subject == "Refund"


def test_a_body_that_lost_its_blank_line_is_not_taken_for_headers():
    msg = parse(b"Subject: x\r\nHello :) thanks\r\n\r\nmore")
    assert msg.headers == (("subject", "x"),)
    assert msg.text.startswith("Hello :) thanks")


def test_an_indented_first_header_is_still_a_header():
    assert mail(" From: ana@example.com", "Subject: hi").from_addr == "ana@example.com"


def test_an_mbox_from_line_is_not_mistaken_for_a_header():
    raw = b"From user@domain  Fri Feb 22 17:06:23 2008\nMessage-ID: <a@b>\nSubject: x\n\nbody"
    msg = parse(raw)
    assert (msg.message_id, msg.subject, msg.text) == ("a@b", "x", "body")


# Text and HTML


ALTERNATIVE = (
    "MIME-Version: 1.0",
    'Content-Type: multipart/alternative; boundary="b"',
)


def test_the_plain_part_is_the_text_and_the_html_part_the_html():
    msg = mail(
        *ALTERNATIVE,
        body="--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html <b>words</b></p>\r\n--b--\r\n",
    )
    assert msg.text == "plain words"
    assert msg.html == "<p>html <b>words</b></p>"


def test_text_has_unix_line_endings():
    assert mail("Subject: x", body="one\r\ntwo\r\n").text == "one\ntwo\n"


def test_html_only_mail_gets_its_text_derived_from_the_html():
    msg = fixture("html-only-with-inline-image.eml")
    assert msg.text == "Hello there,\n\nyour order has shipped.\nbad link good link\n\n- one\n- two"


def test_a_plain_footer_under_html_only_mail_is_part_of_text_and_html():
    msg = mail(
        'Content-Type: multipart/mixed; boundary="m"',
        body="--m\r\nContent-Type: text/html\r\n\r\n<p>Main <i>body</i></p>\r\n"
        "--m\r\nContent-Type: text/plain\r\n\r\n-- \r\nlist footer <unsubscribe>\r\n--m--\r\n",
    )
    assert msg.text == "Main body\n-- \nlist footer <unsubscribe>"
    assert msg.html == "<p>Main <i>body</i></p>\n<pre>-- \nlist footer &lt;unsubscribe&gt;</pre>"


def test_an_empty_plain_alternative_does_not_hide_the_html_one():
    msg = fixture("empty-plain-alternative.eml")
    assert (msg.text, msg.html) == ("HTML Body", "<p>HTML Body</p>")


def test_html_loses_scripts_handlers_styles_and_javascript_urls():
    html = fixture("html-only-with-inline-image.eml").html
    for forbidden in ("<script", "alert(", "onload", "onclick", "steal", "style", "javascript:", "<title", "color: red"):
        assert forbidden not in html


def test_remote_images_lose_their_source_but_cid_and_data_images_keep_it():
    html = fixture("html-only-with-inline-image.eml").html
    assert "tracker.example" not in html
    assert '<img alt="pixel">' in html
    assert 'src="cid:logo@example.com"' in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html


def test_protocol_relative_images_count_as_remote():
    msg = mail("Content-Type: text/html", body='<img src="//tracker.example/p.gif">')
    assert "tracker.example" not in msg.html


def test_links_keep_their_address_open_in_a_new_tab_and_get_noopener_noreferrer():
    html = fixture("html-only-with-inline-image.eml").html
    assert '<a href="https://shop.example/track" target="_blank" rel="noopener noreferrer">good link</a>' in html


def test_data_urls_are_not_allowed_as_links():
    msg = mail("Content-Type: text/html", body='<a href="data:text/html,<script>x</script>">x</a>')
    assert "data:" not in msg.html


def test_the_html_charset_can_come_from_a_meta_tag():
    raw = b'Content-Type: text/html\r\n\r\n<meta charset="iso-8859-2"><p>\xb1</p>'
    assert parse(raw).text == "ą"


def test_nul_characters_never_reach_text_or_headers():
    msg = mail("Subject: a\x00b", body="x\x00y")
    assert (msg.subject, msg.text) == ("ab", "xy")


# Attachments


def test_an_attachment_keeps_its_name_type_and_decoded_bytes():
    (attachment,) = fixture("broken-encodings.eml").attachments
    assert (attachment.filename, attachment.content_type) == ("some.doc", "application/msword")
    assert attachment.data.startswith(b"Hello World")
    assert not attachment.inline


def test_rfc2231_and_rfc2047_encoded_filenames_are_decoded():
    names = [a.filename for a in fixture("encoded-filenames.eml").attachments]
    assert names == ["Rechnung März.pdf", "測試.bin", "Übersicht.doc"]


def test_an_inline_image_with_a_content_id_is_marked_inline():
    (image,) = fixture("html-only-with-inline-image.eml").attachments
    assert (image.content_type, image.content_id, image.inline) == ("image/png", "logo@example.com", True)
    assert image.data.startswith(b"\x89PNG")


def test_a_forwarded_message_is_an_attachment_named_after_its_subject():
    msg = fixture("forwarded-message.eml")
    (forwarded,) = msg.attachments
    assert (forwarded.filename, forwarded.content_type) == ("Rechnung für-Juni.eml", "message/rfc822")
    assert b"INNER TEXT" in forwarded.data
    assert parse(forwarded.data).message_id == "inner-1@example.org"


def test_the_text_of_a_forwarded_message_stays_out_of_the_outer_text():
    msg = fixture("forwarded-message.eml")
    assert msg.text == "See the message below."
    assert msg.message_id == "fwd-1@example.net"


def test_a_path_in_a_filename_is_reduced_to_the_base_name():
    names = [a.filename for a in fixture("windows-path-filename.eml").attachments]
    assert names == ["nsmailEG.png", "RFC-MIME.ps"]


def test_a_raw_8bit_name_that_decodes_to_c1_characters_keeps_its_sender():
    # Shift_JIS full-width space (0x81 0x40): no Windows-1252 character, so the last resort Latin-1 gives C1.
    msg = parse(b"From: \x81\x40Taro <taro@example.jp>\r\nSubject: x\r\nMessage-ID: <a@b.example>\r\n\r\nhi\r\n")
    assert msg.from_addr == "taro@example.jp" and "Taro" in msg.from_name
    assert not any("invalid sender" in defect for defect in msg.defects)


def test_a_right_to_left_override_cannot_disguise_an_attachments_extension():
    raw = ("From: a@b.example\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n'
           "--b\r\nContent-Type: application/octet-stream\r\n"
           "Content-Disposition: attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe\r\n\r\nMZ\r\n--b--\r\n")
    (attachment,) = parse(raw.encode()).attachments
    assert attachment.filename == "invoicefdp.exe"


def test_a_utf8_filename_cut_mid_character_is_still_read_as_utf8():
    (picture,) = fixture("truncated-utf8-filename.eml").attachments
    assert picture.filename.startswith("Картинка с очень, очень длинным")


def test_an_unnamed_attachment_gets_a_name_from_its_type():
    msg = mail(
        'Content-Type: multipart/mixed; boundary="m"',
        body="--m\r\n\r\nhi\r\n--m\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--m--\r\n",
    )
    assert [a.filename for a in msg.attachments] == ["attachment.pdf"]


# Broken mail


def test_wrong_and_unknown_charsets_fall_back_without_raising():
    msg = fixture("broken-encodings.eml")
    assert msg.text == "A text section\nno final boundary, and UTF-8 under an ASCII label: café"
    assert any("fakescii" in defect for defect in msg.defects)


def test_valid_utf8_wins_over_a_latin1_label():
    raw = "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nJürgen".encode()
    assert parse(raw).text == "Jürgen"


def test_windows_1252_under_a_latin1_label_keeps_its_quotes():
    raw = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n\x93quoted\x94"
    assert parse(raw).text == "\u201cquoted\u201d"


def test_a_missing_final_boundary_still_yields_the_parts():
    msg = fixture("broken-encodings.eml")
    assert "CloseBoundaryNotFoundDefect" in msg.defects
    assert "no final boundary" in msg.text


def test_a_multipart_without_a_boundary_is_shown_as_text():
    msg = fixture("multipart-without-boundary.eml")
    assert msg.content_type == "multipart/report"
    assert msg.text.startswith("Delivery to the following recipient failed")


def test_missing_content_type_means_plain_text():
    msg = parse(b"Subject: bare\r\n\r\njust text")
    assert (msg.content_type, msg.text, msg.html) == ("text/plain", "just text", None)


def test_absurdly_deep_nesting_is_cut_off_with_a_defect():
    depth = 200
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    msg = parse((head + "Content-Type: text/plain\r\n\r\ndeep\r\n").encode())
    assert any("too deep" in defect or "unparseable" in defect for defect in msg.defects)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 64,
        b"\r\n\r\n",
        b"Subject: =?utf-8?b?!!!?=\r\n\r\n",
        b"Subject: =?x-nonsense?q?abc?=\r\n\r\n",
        b"From: <<<@@@>>>,,,\r\nTo: ;;;\r\n\r\n",
        b"Content-Type: text/plain; charset=base64\r\n\r\nabc",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n====",
        b"Content-Type: application/x; name*0*=bogus'';name*1*=%ZZ\r\n\r\n",
        b"Date: Mon, 32 Foo 99999 99:99:99 +9999\r\n\r\n",
        "Subject: Grüße\r\nFrom: Jürgen <j@example.org>\r\n\r\n".encode("utf-8"),
    ],
)
def test_odd_inputs_parse_without_raising(raw):
    assert parse(raw).size == len(raw)


def test_random_bytes_never_raise():
    rng = random.Random(20261102)
    alphabet = b"From: To: Subject: Content-Type: multipart/mixed; boundary=\"x\"\r\n--x--=?utf-8?q?\xff\xfe<>@;,\t "
    for _ in range(300):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(400)))
        parse(raw)
    for _ in range(100):
        parse(rng.randbytes(rng.randrange(2000)))


def test_a_huge_references_header_keeps_the_thread_root_and_the_newest_ids():
    ids = " ".join(f"<id{i}@example.com>" for i in range(20_000))
    msg = mail(f"References: {ids}")
    assert msg.references[0] == "id0@example.com"
    assert msg.references[1:] == tuple(f"id{i}@example.com" for i in range(19_901, 20_000))


def test_size_and_content_type_describe_the_raw_message():
    raw = (FIXTURES / "forwarded-message.eml").read_bytes()
    msg = parse(raw)
    assert (msg.size, msg.content_type) == (len(raw), "multipart/mixed")
