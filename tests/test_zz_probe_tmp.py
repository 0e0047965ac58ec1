from tests.test_live_browser import new_ticket, make_operator, settings, claim_ticket, expect, time, sqlite_store

def test_probe(sqlite_store, serve_app, operator_page):
    store = sqlite_store
    ticket_id = new_ticket(store, "holder@customer.example")
    make_operator(store, "ana", name="Ana Souza")
    make_operator(store, "bruno", name="Bruno Reis")
    url_a = serve_app(settings(), store)
    ana = operator_page(url_a, "ana")
    bruno = operator_page(url_a, "bruno")
    claim_ticket(ana, ticket_id, "Ana Souza")
    bruno.add_init_script("""(() => { const E = window.EventSource; window.EventSource = function (u) { const s = new E(u);
      ["open","change","viewers","reset","error","ended"].forEach(n => s.addEventListener(n, e => console.log("ES " + n + " " + (e.data||"") + " " + s.readyState)));
      return s; }; const f = window.fetch; window.fetch = function (u, o) { console.log("FETCH " + u); return f(u, o); };
      const st = window.setTimeout; window.setTimeout = function (fn, d) { console.log("TIMEOUT " + d); return st(function () { try { fn(); } catch (e) { console.log("THROW " + e + e.stack); throw e; } }, d); }; })()""")
    bruno.goto(f"/tickets/{ticket_id}")
    bruno.select_option("#status-select", "pending")
    responses = []
    bruno.on("request", lambda r: responses.append(("req", r.method, r.url)))
    bruno.on("response", lambda r: responses.append((r.request.method, r.url, r.status)))
    bruno.on("requestfailed", lambda r: responses.append(("failed", r.url, r.failure)))
    bruno.on("console", lambda m: responses.append(("console", m.text)))
    bruno.on("pageerror", lambda e: responses.append(("pageerror", str(e))))
    bruno.click("#status-form button[type=submit]")
    expect(bruno.locator("#flash-error")).to_be_visible()
    print("URL", bruno.url)
    time.sleep(1)
    responses.append("RELEASE")
    ana.click("#release-button")
    expect(ana.locator("#flash")).to_contain_text("Claim released")
    responses.append("RELEASED")
    time.sleep(5)
    print("\n".join(map(str,responses)))
    print(bruno.locator("#claim-bar").get_attribute("data-state"))
    print(bruno.evaluate("fetch(location.pathname, {credentials: 'same-origin', headers: {Accept: 'text/html'}}).then(r => [r.status, r.url, r.redirected])"))
    print("\n".join(map(str,responses[-4:])))
