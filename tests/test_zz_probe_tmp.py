from tests.test_live_browser import new_ticket, make_operator, settings, claim_ticket, expect, time, sqlite_store, Dialogs, claim_row, event_kinds, draft_body, DRAFT_TEXT

def test_probe(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "holder@customer.example")
    ana_id = make_operator(store, "ana", name="Ana Souza")
    ana = operator_page(serve_app(settings(), store), "ana")
    d = Dialogs(ana)
    claim_ticket(ana, ticket_id, "Ana Souza")
    ana.fill("#reply-body", DRAFT_TEXT)
    for _ in range(50):
        if draft_body(store, ticket_id, ana_id) == DRAFT_TEXT: break
        time.sleep(0.1)
    ana.reload()
    print("after reload state", ana.locator("#claim-bar").get_attribute("data-state"), d.seen)
    ana.wait_for_timeout(2000)
    print("later state", ana.locator("#claim-bar").get_attribute("data-state"), ana.locator("#claim-warning").text_content(), ana.locator("#reply-body").input_value() == DRAFT_TEXT)
    print(event_kinds(store, ticket_id), claim_row(store, ticket_id).operator_id)
    ana.close()
    time.sleep(1)
    print(event_kinds(store, ticket_id))
