// kessel dashboard: live updates and in-page actions. Plain JavaScript,
// no dependencies; the pages work without it (forms post and redirect,
// pages show the state when loaded).
(function () {
  "use strict";

  var body = document.body;
  var live = document.getElementById("live");
  var flash = document.getElementById("flash");
  var pending = null;
  var busy = false;
  var again = false;

  function setLive(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.textContent = text;
  }

  function say(text, kind) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = kind || "";
  }

  // Fetches this page again and swaps its <main> for the new one, so the
  // page follows the queue without a reload. At most one fetch at a time;
  // events during a fetch ask for one more afterwards.
  function redraw() {
    pending = null;
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.querySelector("main");
        var current = document.querySelector("main");
        if (next && current) current.replaceWith(document.importNode(next, true));
        body.setAttribute("data-redraws", String(Number(body.getAttribute("data-redraws") || "0") + 1));
      })
      .catch(function (err) {
        say("Could not refresh: " + err.message, "error");
      })
      .then(function () {
        busy = false;
        if (again) { again = false; soon(); }
      });
  }

  function soon() {
    if (pending === null) pending = window.setTimeout(redraw, 200);
  }

  var url = body.getAttribute("data-events");
  if (url && window.EventSource) {
    var source = new EventSource(url);
    source.addEventListener("open", function () { setLive("live", "live"); });
    source.addEventListener("error", function () { setLive("reconnecting", "reconnecting"); });
    ["job", "queue", "lagged"].forEach(function (name) {
      source.addEventListener(name, soon);
    });
  }

  // Some of a page changes with no event here (other processes'
  // heartbeats on the overview): redraw it every data-refresh seconds
  // too, while the tab is visible.
  var every = Number(body.getAttribute("data-refresh") || "0");
  if (every > 0) {
    window.setInterval(function () {
      if (!document.hidden) soon();
    }, every * 1000);
  }

  // Forms marked data-live post in the background; the page then redraws.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-live")) return;
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      body: new URLSearchParams(new FormData(form))
    })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        if (answer.ok) {
          say(answer.data.message || "Done.", "ok");
        } else {
          say((answer.data.error && answer.data.error.message) || "Refused.", "error");
        }
      })
      .catch(function (err) { say("Failed: " + err.message, "error"); })
      .then(function () {
        buttons.forEach(function (b) { b.disabled = false; });
        soon();
      });
  });
})();
