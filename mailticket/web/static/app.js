/* mailticket's live pages: the reply form (claim renewal while the operator is active, countdown, drafts saved as
   typed, the claim released when the page closes) and the ticket and queue pages following every change made
   anywhere (web/live.py's stream). Every page works without this script; it never clears what the operator typed. */
(function () {
  "use strict";

  var DRAFT_DELAY_MS = 700;   // a pause in typing this long saves the draft
  var REFRESH_DELAY_MS = 150; // changes that come together are fetched once
  var QUEUE_DELAY_MS = 300;   // the queue follows every ticket: it gathers changes a little longer
  var QUEUE_REFRESH_MS = 60000; // a quiet queue still shows the waiting times and claims as they age

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // The words come from an element's data-text-* attributes, in the page's language (English if one is missing);
  // their %(name)s placeholders are filled from `values`.
  function say(element, name, english, values) {
    var text = (element && element.getAttribute("data-text-" + name)) || english;
    Object.keys(values || {}).forEach(function (key) { text = text.split("%(" + key + ")s").join(values[key]); });
    return text;
  }

  // A form is being posted: the page unloads on purpose, so neither the leave warning nor the release beacon apply.
  var submitting = false;
  document.addEventListener("submit", function (event) {
    if (!event.defaultPrevented) { submitting = true; }
  });

  // The page fetches itself again on purpose (the draft comes back with it): no warning, and the claim stays. Not
  // while a note is being typed: a note has no draft, and the next post shows the page as it is anyway.
  function reloadQuietly() {
    var note = document.getElementById("note-body");
    if (note && note.value.trim()) { return; }
    submitting = true;
    window.location.reload();
  }

  var RECLAIM_WITHIN_MS = 10000;  // a reload this soon after its page released the claim takes it again

  function releasedKey(ticketPage) { return "mailticket-released:" + ticketPage; }

  function replyForm(form) {
    var holding = form.getAttribute("data-holding") === "1";
    var heartbeat = parseFloat(form.getAttribute("data-heartbeat") || "0");
    var idleAfter = parseFloat(form.getAttribute("data-idle-after") || "0") * 1000;
    var renewUrl = form.getAttribute("data-renew-url");
    var draftUrl = form.getAttribute("data-draft-url");
    var releaseUrl = form.getAttribute("data-release-url");
    var expires = Date.parse(form.getAttribute("data-expires") || "");
    var countdown = document.getElementById("claim-countdown");
    var warning = document.getElementById("claim-warning");
    var csrf = form.querySelector("input[name=csrf_token]").value;
    var tokenInput = form.querySelector("input[name=claim_token]");
    var body = document.getElementById("reply-body");
    var to = document.getElementById("reply-to");
    var cc = document.getElementById("reply-cc");
    var send = document.getElementById("reply-send");
    var lost = false;
    var lastActive = Date.now();
    var saved = draftText();
    var saveTimer = null;

    function warn(text) {
      warning.textContent = text;
      warning.hidden = false;
    }

    function draftText() {
      return JSON.stringify({ body: body.value, to: to ? to.value : null, cc: cc ? cc.value : "" });
    }

    function unsaved() { return draftText() !== saved; }

    function saveDraft(keepalive) {
      window.clearTimeout(saveTimer);
      var text = draftText();
      if (text === saved || !draftUrl) { return; }
      // After Send, a late save would bring the sent text back as a draft (its post saves the text itself).
      if (submitting && !keepalive) { return; }
      fetch(draftUrl, {
        method: "PUT", credentials: "same-origin", keepalive: !!keepalive, body: text,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }
      }).then(function (response) { if (response.ok) { saved = text; } }).catch(function () {});
    }

    function tick() {
      if (!countdown || isNaN(expires) || lost) { return; }
      var left = Math.round((expires - Date.now()) / 1000);
      if (left <= 0) {
        countdown.textContent = say(form, "expired", "Your claim has expired. Your text is kept; claim the ticket again to send it.");
        countdown.className = "countdown expiring";
        return;
      }
      countdown.textContent = say(form, "expires", "Your claim expires in %(time)s.",
                                  { time: Math.floor(left / 60) + ":" + two(left % 60) });
      countdown.className = left < 120 ? "countdown expiring" : "countdown";
    }

    function loseClaim(text) {
      lost = true;
      holding = false;
      if (countdown) { countdown.textContent = ""; }
      if (send) { send.hidden = true; }
      warn(text);
    }

    // The claim is renewed only while the operator is here: gone longer than idleAfter, it runs out at its ttl.
    function renew() {
      if (!holding || lost || (idleAfter > 0 && Date.now() - lastActive > idleAfter)) { return; }
      fetch(renewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ claim_token: tokenInput.value })
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.ok && data.expires_at) {
            expires = Date.parse(data.expires_at);
            warning.hidden = true;
          } else if (response.status === 409) {
            loseClaim(say(form, "lost", "Your claim was lost: %(reason)s. Your text is kept here; reload the page or copy it before you leave.",
                          { reason: data.detail || say(form, "lost-reason", "it expired or was taken") }));
          } else {
            warn(say(form, "not-renewed", "The claim could not be renewed (%(reason)s); trying again.",
                     { reason: data.detail || response.status }));
          }
        });
      }).catch(function () {
        warn(say(form, "offline", "The claim could not be renewed: no connection to the server; trying again."));
      });
    }

    // Activity anywhere on the page counts (reading a long thread too); only what a person does, never the
    // page's own updates.
    ["input", "keydown", "mousedown", "focusin", "wheel", "touchstart"].forEach(function (name) {
      document.addEventListener(name, function () { lastActive = Date.now(); }, { passive: true });
    });
    window.addEventListener("focus", function () { lastActive = Date.now(); });
    form.addEventListener("input", function () {
      window.clearTimeout(saveTimer);
      saveTimer = window.setTimeout(saveDraft, DRAFT_DELAY_MS);
    });
    // This form's posts (send, claim, release) carry the text; another form's post leaves the page: save it first.
    document.addEventListener("submit", function (event) {
      if (event.defaultPrevented) { return; }
      if (event.target === form) { window.clearTimeout(saveTimer); } else { saveDraft(true); }
    });

    // Attachments over the limit are refused before the form is posted: a refused post of a big body could not
    // bring the typed text back.
    var maxBytes = parseInt(form.getAttribute("data-max-attachment-bytes") || "0", 10);
    var files = form.querySelector("input[type=file]");
    form.addEventListener("submit", function (event) {
      if (!files || !maxBytes) { return; }
      var total = 0;
      for (var i = 0; i < files.files.length; i++) { total += files.files[i].size; }
      if (total > maxBytes) {
        event.preventDefault();
        warn(say(form, "too-big", "Not sent: the attachments are too big, together at most %(limit)s bytes. Your text is kept; choose smaller files.",
                 { limit: maxBytes }));
      }
    });

    // "Release claim" with text asks first (the text is kept as the draft either way).
    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("#release-button");
      if (button && body.value.trim() && !window.confirm(say(form, "release", "Release the claim? Your text is kept as a draft, but someone else may answer first."))) {
        event.preventDefault();
      }
    });

    // The text is saved on the way out (pagehide, below); this asks whether to leave it unsent.
    window.addEventListener("beforeunload", function (event) {
      if (submitting || !body.value.trim()) { return; }
      event.preventDefault();
      event.returnValue = "";
    });

    // Closing the tab (or leaving the page) ends the claim at once, instead of at its expiry; the token makes sure
    // it is this claim, not a newer one, and the page id leaves it to the operator's other open pages of the ticket.
    window.addEventListener("pagehide", function () {
      if (submitting) { return; }
      saveDraft(true);
      if (holding && !lost && releaseUrl && navigator.sendBeacon) {
        var data = new FormData();
        data.append("csrf_token", csrf);
        data.append("claim_token", tokenInput.value);
        var live = document.getElementById("live");
        if (live && live.getAttribute("data-page-id")) { data.append("page", live.getAttribute("data-page-id")); }
        navigator.sendBeacon(releaseUrl, data);
        window.sessionStorage.setItem(releasedKey(releaseUrl.replace(/\/release$/, "")), String(Date.now()));
      }
    });

    if (holding) {
      tick();
      window.setInterval(tick, 1000);
      if (heartbeat > 0 && renewUrl) {
        window.setInterval(renew, heartbeat * 1000);
      }
    }

    return {
      // The claim as the live page now shows it: someone else's, nobody's, or ours with this token.
      follow: function (bar) {
        var state = bar.getAttribute("data-state");
        var lock = document.getElementById("reply-lock");
        var kept = say(form, "kept", "Your text is kept as a draft.");
        if (state === "mine") {
          var token = bar.getAttribute("data-token");
          if (holding && token === tokenInput.value) {
            expires = Date.parse(bar.getAttribute("data-expires") || "") || expires;
            return;
          }
          if (!unsaved()) { reloadQuietly(); }  // claimed in another tab: the draft comes back
          return;
        }
        if (state === "other" && lock) {
          loseClaim(lock.textContent.trim() + ". " + kept);
        } else if (state === "free" && (holding || lost)) {
          loseClaim(say(form, "free", "Nobody holds the claim now. Your text is kept as a draft: claim the ticket to send it."));
        }
      }
    };
  }

  // Canned replies: insert the chosen text (filled by the server) at the cursor, without a reload.
  function cannedInsert(button) {
    var select = document.getElementById("canned-select");
    var body = document.getElementById("reply-body");
    if (!select || !body) { return; }
    button.addEventListener("click", function (event) {
      var option = select.options[select.selectedIndex];
      if (!option) { return; }
      event.preventDefault();
      var text = option.getAttribute("data-body") || "";
      var start = body.selectionStart, end = body.selectionEnd;
      body.setRangeText(text, start, end, "end");
      body.dispatchEvent(new Event("input", { bubbles: true }));
      body.focus();
    });
  }

  // The page's change stream: `handlers.change(data)` for each change, `handlers.viewers(data)` for who views the
  // ticket, `handlers.page(id)` for the ticket page's id, `handlers.reconnected()` when changes may have been
  // missed (a broken connection, a reset).
  function listen(url, handlers) {
    if (!window.EventSource) { return; }
    var source = new EventSource(url);
    var opened = false;
    source.addEventListener("open", function () {
      if (opened && handlers.reconnected) { handlers.reconnected(); }
      opened = true;
    });
    source.addEventListener("change", function (event) { JSON.parse(event.data).changes.forEach(handlers.change); });
    source.addEventListener("reset", function () { if (handlers.reconnected) { handlers.reconnected(); } });
    source.addEventListener("page", function (event) {
      if (handlers.page) { handlers.page(JSON.parse(event.data).page); }
    });
    source.addEventListener("viewers", function (event) {
      if (handlers.viewers) { handlers.viewers(JSON.parse(event.data)); }
    });
    source.addEventListener("ended", function () { source.close(); });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // Fetches this page again and hands over the new document; changes coming together are fetched once.
  function refresher(url, apply) {
    var timer = null, running = false, again = false;
    function run() {
      if (running) { again = true; return; }
      running = true;
      fetch(url(), { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (response) {
        if (!response.ok || response.redirected) { return null; }  // signed out: the next click shows the login
        return response.text();
      }).then(function (html) {
        if (html) { apply(new DOMParser().parseFromString(html, "text/html")); }
      }).catch(function () {}).then(function () {
        running = false;
        if (again) { again = false; run(); }
      });
    }
    // At most one fetch waits: a busy stream of changes delays it by no more than `delay`.
    return function (delay) {
      if (timer !== null) { return; }
      timer = window.setTimeout(function () { timer = null; run(); }, delay === undefined ? REFRESH_DELAY_MS : delay);
    };
  }

  function swap(doc, selector) {
    var now = document.querySelector(selector), fresh = doc.querySelector(selector);
    if (now && fresh) { now.replaceWith(document.importNode(fresh, true)); }
  }

  function liveTicket(live, reply) {
    var me = live.getAttribute("data-me");
    var page = live.getAttribute("data-page");
    var viewers = [];
    var expiryTimer = null;

    // A reload (F5) released the claim on its way out (the beacon below): the page that comes back takes it again,
    // as soon as it sees it free, as the operator's own click on "Claim to reply" would (someone quicker keeps it).
    var released = parseInt(window.sessionStorage.getItem(releasedKey(page)) || "0", 10);
    window.sessionStorage.removeItem(releasedKey(page));
    var navigation = window.performance && performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
    var reclaimUntil = navigation && navigation.type === "reload" ? released + RECLAIM_WITHIN_MS : 0;

    function reclaimAfterReload() {
      var bar = document.getElementById("claim-bar"), button = document.getElementById("claim-button");
      if (Date.now() < reclaimUntil && bar && bar.getAttribute("data-state") === "free" && button) {
        reclaimUntil = 0;
        button.click();
      }
    }

    function showViewers() {
      var line = document.getElementById("viewers");
      if (!line) { return; }
      var names = viewers.filter(function (v) { return String(v.id) !== me; }).map(function (v) { return v.name; });
      line.textContent = names.length ? say(live, "viewing", "Also viewing: %(names)s", { names: names.join(", ") }) : "";
      line.hidden = !names.length;
    }

    function apply(doc) {
      swap(doc, ".ticket-head");
      swap(doc, "#history");
      var fields = document.getElementById("ticket-fields");
      if (fields && !fields.contains(document.activeElement)) { swap(doc, "#ticket-fields"); }
      // New messages go in before the forms, in order; the ones shown stay as they are (their frames too).
      var thread = document.getElementById("thread");
      var before = document.getElementById("reply-form") || document.getElementById("note-form");
      doc.querySelectorAll("#thread > article.message").forEach(function (article) {
        if (!document.getElementById(article.id)) {
          thread.insertBefore(document.importNode(article, true), before);
          var empty = thread.querySelector("p.empty");
          if (empty) { empty.remove(); }
        }
      });
      swap(doc, "#claim-bar");
      var bar = document.getElementById("claim-bar");
      var form = document.getElementById("reply-form");
      if (form) {
        // The claim button posts the typed text too, so that it comes back claimed.
        var claim = document.getElementById("claim-button");
        if (claim) {
          claim.setAttribute("form", "reply-form");
          claim.setAttribute("formaction", form.getAttribute("action").replace(/\/reply$/, "/claim"));
          claim.formNoValidate = true;
        }
        if (reply) { reply.follow(bar); }
      } else if (doc.getElementById("reply-form")) {
        reloadQuietly();  // claimed in another tab: the reply form with the draft comes with the page
        return;
      }
      showViewers();
      reclaimAfterReload();
      watchExpiry();
    }

    // A claim runs out without any change being recorded until the expiry job runs: the page looks again then.
    function watchExpiry() {
      var bar = document.getElementById("claim-bar");
      var expires = Date.parse((bar && bar.getAttribute("data-expires")) || "");
      window.clearTimeout(expiryTimer);
      if (!isNaN(expires)) {
        expiryTimer = window.setTimeout(function () { refresh(0); }, Math.max(0, expires - Date.now()) + 500);
      }
    }

    // The page may be the answer to a form post (a refusal shows it again at the post's address): it fetches, and
    // a reload shows, the ticket's own address.
    if (window.location.pathname !== page && window.history.replaceState) {
      window.history.replaceState(null, "", page);
    }
    var refresh = refresher(function () { return page; }, apply);
    listen(live.getAttribute("data-stream"), {
      change: function () { refresh(); },
      reconnected: function () { refresh(0); },
      viewers: function (data) { viewers = data.viewers || []; showViewers(); },
      page: function (id) { live.setAttribute("data-page-id", id); }
    });
    reclaimAfterReload();
    watchExpiry();
  }

  function liveQueue(live) {
    var created = {};
    var ask = document.getElementById("notify-button");
    var canNotify = "Notification" in window;
    if (ask && canNotify && Notification.permission === "default" && !window.localStorage.getItem("mailticket-notify-asked")) {
      ask.hidden = false;
      ask.addEventListener("click", function () {
        window.localStorage.setItem("mailticket-notify-asked", "1");
        ask.hidden = true;
        Notification.requestPermission();
      });
    }

    function rowIds(root) {
      var ids = {};
      root.querySelectorAll("tr.ticket-row").forEach(function (row) { ids[row.id] = true; });
      return ids;
    }

    function apply(doc) {
      var shown = rowIds(document);
      swap(doc, "#queue-list");
      document.title = doc.title;
      if (!canNotify || Notification.permission !== "granted") { return; }
      doc.querySelectorAll("tr.ticket-row").forEach(function (row) {
        var id = row.id.replace("ticket-row-", "");
        if (!shown[row.id] && created[id]) {
          delete created[id];
          var link = row.querySelector("td.subject a");
          new Notification(say(live, "new-ticket", "New ticket #%(id)s", { id: id }),
                           { body: link ? link.textContent.trim() : "", tag: "mailticket-" + id });
        }
      });
    }

    var refresh = refresher(function () { return window.location.pathname + window.location.search; }, apply);
    listen(live.getAttribute("data-stream"), {
      change: function (data) {
        if (data.kind === "created") { created[String(data.ticket)] = true; }
        if (data.kind !== "renewed") { refresh(QUEUE_DELAY_MS); }
      },
      reconnected: function () { refresh(0); }
    });
    window.setInterval(function () { if (!document.hidden) { refresh(0); } }, QUEUE_REFRESH_MS);
  }

  // A live page brought back by Back or Forward (the browser's page cache) missed the changes of its absence and
  // closed its stream: it is fetched again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && (document.getElementById("live") || document.getElementById("live-queue"))) {
      reloadQuietly();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("reply-form");
    var reply = form ? replyForm(form) : null;
    var insert = document.getElementById("canned-insert");
    if (insert) { cannedInsert(insert); }
    var live = document.getElementById("live");
    if (live) { liveTicket(live, reply); }
    var queue = document.getElementById("live-queue");
    if (queue) { liveQueue(queue); }
  });
}());
