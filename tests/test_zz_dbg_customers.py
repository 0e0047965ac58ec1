from tests.test_customers import *
def test_dbg(app, store):
    first = make_ticket(store, sender=ANA, subject="x", message_id="a@c.example", at=T0)
    customer = customer_of(store, first)
    ana = signed_in(app, store, "ana")
    r = ana.post(f"/customers/{customer}/addresses", {"address": "ana.silva@work.example"})
    print(element(r.text, "flash-error"))
