"""The timing report (mailticket.reports) over a small dataset worked out by hand, its renderers, and the SVG charts."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import date, datetime, timezone

import pytest

from mailticket.charts import bar_chart, line_chart
from mailticket.reports import (
    CSV_HEADER,
    TicketFigures,
    as_csv,
    as_json,
    as_table,
    build_report,
    percentile,
)
from mailticket.durations import compact

UTC = timezone.utc
SVG = "{http://www.w3.org/2000/svg}"


def ticket(ticket_id, queue, operator, created, fr, handle, res, sla_fr, sla_res, replies, reopened, csat):
    return TicketFigures(ticket_id, queue, operator, created, fr, handle, res, sla_fr, sla_res, replies, reopened, csat)


#   id queue     operator created (UTC)           1st resp handle resolution SLA 1st SLA res replies reopened CSAT
TICKETS = [
    ticket(1, "billing", "ana", datetime(2025, 3, 3, 10, 0, tzinfo=UTC), 600, 300, 3600, True, True, 1, False, 5),
    ticket(2, "billing", "ana", datetime(2025, 3, 4, 1, 30, tzinfo=UTC), 1800, 600, 7200, True, False, 2, False, 4),
    ticket(3, "billing", "bob", datetime(2025, 3, 4, 9, 0, tzinfo=UTC), 3600, 900, None, False, None, 1, False, None),
    ticket(4, "shipping", "bob", datetime(2025, 3, 4, 12, 0, tzinfo=UTC), 300, 120, 1800, True, True, 1, True, 2),
    ticket(5, "shipping", "ana", datetime(2025, 3, 6, 8, 0, tzinfo=UTC), 7200, 1200, 14400, False, False, 1, False, 3),
    ticket(6, "shipping", "bob", datetime(2025, 3, 6, 15, 0, tzinfo=UTC), 900, 240, 900, None, True, 1, False, 5),
    ticket(7, "billing", None, datetime(2025, 3, 6, 16, 0, tzinfo=UTC), None, 0, None, None, None, 0, False, None),
    ticket(8, "shipping", "bob", datetime(2025, 3, 7, 11, 0, tzinfo=UTC), 1200, 600, 5400, True, None, 1, False, 4),
]
# Days are counted in São Paulo (UTC-3): ticket 2 (01:30 UTC on the 4th) was created on the evening of the 3rd.
REPORT = build_report(TICKETS, timezone="America/Sao_Paulo")


def test_percentile_is_the_nearest_rank():
    # The textbook example: 15, 20, 35, 40, 50.
    values = [50, 15, 40, 20, 35]
    assert [percentile(values, p) for p in (5, 30, 40, 50, 90, 100)] == [15, 20, 20, 35, 50, 50]
    assert percentile([], 90) is None


def test_overall_times_by_hand():
    overall = REPORT.overall
    assert overall.tickets == 8
    # First response, 7 tickets answered: 300 600 900 1200 1800 3600 7200, sum 15600.
    # mean 15600 / 7; median the 4th value, 1200; p90 rank ceil(0.9 * 7) = 7, 7200.
    assert (overall.first_response.count, overall.first_response.median, overall.first_response.p90) == (7, 1200, 7200)
    assert overall.first_response.mean == pytest.approx(15600 / 7)
    # Handle, the 7 tickets someone worked on (ticket 7's 0 is left out): 120 240 300 600 600 900 1200,
    # sum 3960; median 600; p90 1200.
    assert (overall.handle.count, overall.handle.median, overall.handle.p90) == (7, 600, 1200)
    assert overall.handle.mean == pytest.approx(3960 / 7)
    # Resolution, 6 resolved: 900 1800 3600 5400 7200 14400, sum 33300: mean 5550;
    # median (3600 + 5400) / 2 = 4500; p90 rank ceil(0.9 * 6) = 6, 14400.
    assert overall.resolution == type(overall.resolution)(6, 5550, 4500, 14400)


def test_overall_sla_fcr_and_csat_by_hand():
    overall = REPORT.overall
    # SLA first response verdicts: T T F T F T (tickets 6 and 7 have none) -> 4 of 6.
    assert (overall.sla_first_response.hits, overall.sla_first_response.total) == (4, 6)
    assert overall.sla_first_response.percent == pytest.approx(200 / 3)
    # SLA resolution: T F T F T (tickets 3, 7 and 8 have none) -> 3 of 5 = 60%.
    assert overall.sla_resolution.percent == 60.0
    # FCR among the 6 resolved: 1 yes, 2 no (two replies), 4 no (reopened), 5 yes, 6 yes, 8 yes -> 4 of 6.
    assert (overall.first_contact_resolution.hits, overall.first_contact_resolution.total) == (4, 6)
    # CSAT: 5 4 2 3 5 4 -> 23 / 6.
    assert overall.csat.count == 6
    assert overall.csat.mean == pytest.approx(23 / 6)


def test_per_queue_by_hand():
    billing, shipping = REPORT.queues
    assert (billing.name, billing.tickets, shipping.name, shipping.tickets) == ("billing", 4, "shipping", 4)
    # billing: first response 600 1800 3600 -> mean 2000, median 1800, p90 rank 3 = 3600;
    # resolution 3600 7200 -> mean 5400, median 5400, p90 rank 2 = 7200.
    assert billing.first_response == type(billing.first_response)(3, 2000, 1800, 3600)
    assert billing.resolution == type(billing.resolution)(2, 5400, 5400, 7200)
    # SLA 1st T T F -> 2/3; SLA res T F -> 1/2; FCR: 1 yes, 2 no -> 1/2; CSAT 5 4 -> 4.5.
    assert (billing.sla_first_response.hits, billing.sla_first_response.total) == (2, 3)
    assert billing.sla_resolution.percent == 50.0
    assert billing.first_contact_resolution.percent == 50.0
    assert (billing.csat.count, billing.csat.mean) == (2, 4.5)
    # shipping: first response 300 900 1200 7200 -> mean 2400, median (900 + 1200) / 2 = 1050, p90 rank 4 = 7200;
    # handle 120 240 600 1200 -> mean 540, median 420; resolution 900 1800 5400 14400 -> mean 5625, median 3600.
    assert shipping.first_response == type(shipping.first_response)(4, 2400, 1050, 7200)
    assert (shipping.handle.mean, shipping.handle.median, shipping.handle.p90) == (540, 420, 1200)
    assert (shipping.resolution.mean, shipping.resolution.median, shipping.resolution.p90) == (5625, 3600, 14400)
    # FCR: 4 no (reopened), 5 6 8 yes -> 75%; CSAT 2 3 5 4 -> 3.5.
    assert shipping.first_contact_resolution.percent == 75.0
    assert shipping.csat.mean == 3.5


def test_per_operator_by_hand_with_unanswered_tickets_last():
    ana, bob, nobody = REPORT.operators
    assert (ana.name, bob.name, nobody.name) == ("ana", "bob", None)
    # ana (1, 2, 5): first response 600 1800 7200 -> mean 3200, median 1800, p90 7200;
    # SLA res T F F -> 1/3; FCR 1 yes, 2 no, 5 yes -> 2/3; CSAT 5 4 3 -> 4.0.
    assert ana.first_response == type(ana.first_response)(3, 3200, 1800, 7200)
    assert (ana.sla_resolution.hits, ana.sla_resolution.total) == (1, 3)
    assert (ana.first_contact_resolution.hits, ana.first_contact_resolution.total) == (2, 3)
    assert ana.csat.mean == 4.0
    # bob (3, 4, 6, 8): first response 300 900 1200 3600 -> mean 1500, median 1050, p90 3600;
    # handle 120 240 600 900 -> mean 465; resolution 900 1800 5400 -> mean 2700, median 1800, p90 5400;
    # SLA res T T -> 100%.
    assert bob.first_response == type(bob.first_response)(4, 1500, 1050, 3600)
    assert bob.handle.mean == 465
    assert bob.resolution == type(bob.resolution)(3, 2700, 1800, 5400)
    assert bob.sla_resolution.percent == 100.0
    # Nobody answered ticket 7: a row with no figures, and None (not 0%) for every rate.
    assert nobody.tickets == 1
    assert nobody.first_response.count == 0 and nobody.first_response.mean is None
    assert nobody.sla_first_response.percent is None and nobody.first_contact_resolution.percent is None


def test_tickets_per_day_are_counted_in_the_report_time_zone_with_empty_days_filled():
    assert REPORT.per_day == (
        (date(2025, 3, 3), 2),  # tickets 1 and 2 (22:30 local)
        (date(2025, 3, 4), 2),
        (date(2025, 3, 5), 0),
        (date(2025, 3, 6), 3),
        (date(2025, 3, 7), 1),
    )
    assert build_report(TICKETS).per_day[0] == (date(2025, 3, 3), 1)  # in UTC ticket 2 falls on the 4th


def test_a_csat_score_outside_one_to_five_is_refused():
    with pytest.raises(ValueError, match="CSAT must be 1 to 5"):
        ticket(9, "billing", "ana", datetime(2025, 3, 3, tzinfo=UTC), 60, 60, 60, None, None, 1, False, 6)


def test_an_empty_report_has_zero_counts_and_no_days():
    empty = build_report([])
    assert empty.overall.tickets == 0 and empty.queues == () and empty.per_day == ()
    assert empty.overall.first_response.mean is None


def test_json_has_the_groups_and_days_and_survives_json_dumps():
    data = json.loads(json.dumps(as_json(REPORT)))
    assert set(data) == {"timezone", "overall", "queues", "operators", "per_day"}
    assert [q["name"] for q in data["queues"]] == ["billing", "shipping"]
    assert [o["name"] for o in data["operators"]] == ["ana", "bob", None]
    overall = data["overall"]
    assert overall["first_response"] == {"count": 7, "mean": pytest.approx(15600 / 7), "median": 1200, "p90": 7200}
    assert overall["sla_resolution"] == {"hits": 3, "total": 5, "percent": 60.0}
    assert overall["csat"] == {"count": 6, "average": pytest.approx(23 / 6)}
    assert data["per_day"][2] == {"date": "2025-03-05", "tickets": 0}


def test_csv_has_a_header_and_one_row_per_group():
    rows = list(csv.reader(io.StringIO(as_csv(REPORT))))
    assert rows[0] == list(CSV_HEADER)
    assert [(row[0], row[1]) for row in rows[1:]] == [
        ("overall", ""), ("queue", "billing"), ("queue", "shipping"),
        ("operator", "ana"), ("operator", "bob"), ("operator", "(none)")]
    billing = dict(zip(rows[0], rows[2]))
    assert (billing["tickets"], billing["first_response_median_s"], billing["sla_resolution_percent"]) == (
        "4", "1800.0", "50.0")
    assert dict(zip(rows[0], rows[6]))["csat_average"] == ""  # no figure is an empty cell, not 0


def test_durations_read_as_two_units_for_people():
    # The one compact form of mailticket.durations, as the pages write it; "-" for none in text and CSV.
    assert [compact(s) for s in (42, 125, 7500, 90000, 0)] == ["< 1 min", "2 min", "2 h 5 min", "1 d 1 h", "0 min"]
    assert compact(None, "-") == "-"


def test_the_text_table_is_aligned_with_human_durations():
    lines = as_table(REPORT).splitlines()
    assert len(lines) == 7  # header, overall, two queues, three operators
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
    overall = lines[1]
    # The medians: first response 1200 s, resolution 4500 s.
    assert overall.startswith("overall") and "20 min" in overall and "1 h 15 min" in overall
    assert "67% (4/6)" in overall
    assert lines[-1].startswith("operator (none)")
    # The tickets column ends at the same place on every row (right-aligned numbers).
    end = lines[0].index("tickets") + len("tickets")
    assert [line[end - 1] for line in lines[1:]] == ["8", "4", "4", "3", "4", "1"]


def svg_root(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == SVG + "svg" and root.get("role") == "img" and root.get("viewBox", "").startswith("0 0 ")
    return root


def test_a_bar_chart_is_well_formed_accessible_and_escapes_labels():
    svg = bar_chart("First response <median>", ["<script>alert(1)</script>", "a & b"], [30.0, 12.5], "min")
    root = svg_root(svg)
    assert root.find(SVG + "title").text == "First response <median>"
    assert "a & b: 12.5 min" in root.get("aria-label")
    assert not [el for el in root.iter() if el.tag.endswith("script")]
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    widths = [float(rect.get("width")) for rect in root.iter(SVG + "rect")]
    # The largest value fills the 380 units between labels and values; the other bar is in proportion.
    assert widths == [380.0, 158.3]


def test_a_line_chart_has_one_point_per_day_and_names_its_range():
    points = [(day, n) for day, n in REPORT.per_day]
    root = svg_root(line_chart("Tickets per day", points))
    assert len(list(root.iter(SVG + "circle"))) == 5
    assert "from 2025-03-03 to 2025-03-07" in root.get("aria-label")
    assert "highest 3 on 2025-03-06" in root.get("aria-label")


def test_charts_without_data_say_so_and_stay_well_formed():
    for svg in (bar_chart("Nothing", [], []), line_chart("Nothing", [])):
        assert "No data" in svg_root(svg).get("aria-label")
    with pytest.raises(ValueError):
        bar_chart("Mismatch", ["a"], [1.0, 2.0])
