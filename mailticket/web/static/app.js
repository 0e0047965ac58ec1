/* mailticket: renews the reply form's claim, counts down to its expiry, refreshes the queue.
   Every page works without this script; it never clears or rewrites what the operator typed. */
(function () {
  "use strict";

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function replyForm(form) {
    var holding = form.getAttribute("data-holding") === "1";
    var heartbeat = parseFloat(form.getAttribute("data-heartbeat") || "0");
    var renewUrl = form.getAttribute("data-renew-url");
    var expires = Date.parse(form.getAttribute("data-expires") || "");
    var countdown = document.getElementById("claim-countdown");
    var warning = document.getElementById("claim-warning");
    var csrf = form.querySelector("input[name=csrf_token]").value;
    var token = form.querySelector("input[name=claim_token]").value;
    var lost = false;

    function warn(text) {
      warning.textContent = text;
      warning.hidden = false;
    }

    // The words come from the form's data-text-* attributes, in the page's language (English if one is missing);
    // their %(name)s placeholders are filled from `values`.
    function say(name, english, values) {
      var text = form.getAttribute("data-text-" + name) || english;
      Object.keys(values || {}).forEach(function (key) { text = text.split("%(" + key + ")s").join(values[key]); });
      return text;
    }

    function tick() {
      if (!countdown || isNaN(expires) || lost) { return; }
      var left = Math.round((expires - Date.now()) / 1000);
      if (left <= 0) {
        countdown.textContent = say("expired", "Your claim has expired. Your text is kept; claim the ticket again to send it.");
        countdown.className = "countdown expiring";
        return;
      }
      countdown.textContent = say("expires", "Your claim expires in %(time)s.",
                                  { time: Math.floor(left / 60) + ":" + two(left % 60) });
      countdown.className = left < 120 ? "countdown expiring" : "countdown";
    }

    function renew() {
      if (lost) { return; }
      fetch(renewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ claim_token: token })
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.ok && data.expires_at) {
            expires = Date.parse(data.expires_at);
            warning.hidden = true;
          } else if (response.status === 409) {
            lost = true;
            if (countdown) { countdown.textContent = ""; }
            warn(say("lost", "Your claim was lost: %(reason)s. Your text is kept here; reload the page or copy it before you leave.",
                     { reason: data.detail || say("lost-reason", "it expired or was taken") }));
          } else {
            warn(say("not-renewed", "The claim could not be renewed (%(reason)s); trying again.",
                     { reason: data.detail || response.status }));
          }
        });
      }).catch(function () {
        warn(say("offline", "The claim could not be renewed: no connection to the server; trying again."));
      });
    }

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
        warn(say("too-big", "Not sent: the attachments are too big, together at most %(limit)s bytes. Your text is kept; choose smaller files.",
                 { limit: maxBytes }));
      }
    });

    if (holding) {
      tick();
      window.setInterval(tick, 1000);
      if (heartbeat > 0 && renewUrl) {
        window.setInterval(renew, heartbeat * 1000);
      }
    }
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

  function refreshingQueue(head) {
    var seconds = parseInt(head.getAttribute("data-refresh") || "0", 10);
    if (seconds <= 0) { return; }
    window.setInterval(function () {
      var active = document.activeElement;
      var busy = active && (active.tagName === "SELECT" || active.tagName === "INPUT");
      if (!document.hidden && !busy) { window.location.reload(); }
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("reply-form");
    if (form) { replyForm(form); }
    var insert = document.getElementById("canned-insert");
    if (insert) { cannedInsert(insert); }
    var head = document.querySelector("[data-refresh]");
    if (head) { refreshingQueue(head); }
  });
}());
