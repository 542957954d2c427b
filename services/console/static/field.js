// Minqing field capture (docs/console.md, "Field capture"): reports and visits typed with no network
// are kept on the phone with their capture time and a key made at capture, and sent once the network
// is back. Without this file the page is a plain form that registers at once.
(function () {
  "use strict";
  var root = document.getElementById("field");
  if (!root || !window.localStorage || !window.fetch || !window.JSON) { return; }
  var user = root.getAttribute("data-user"), store = "minqing.field." + user, syncing = false, again = false;
  var label = function (name) { return root.getAttribute("data-" + name) || name; };

  if (navigator.serviceWorker) {
    navigator.serviceWorker.register("/console/field/sw.js", {scope: "/console/field/"}).catch(function () {});
  }

  function load() {
    try { return JSON.parse(localStorage.getItem(store) || "[]"); } catch (e) { return []; }
  }
  function save(entries) {     // synced entries are shown for a week, then forgotten
    var week = Date.now() - 7 * 86400000;
    localStorage.setItem(store, JSON.stringify(entries.filter(function (e) {
      return e.state !== "synced" || Date.parse(e.synced_at) > week;
    })));
  }

  function newKey() {      // a UUID v4 (crypto.randomUUID needs a secure context; this does not)
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }

  function local(iso) {
    var d = new Date(iso), p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes());
  }

  function item(entry) {
    var li = document.createElement("li"), what = document.createElement("strong"), line = document.createElement("span");
    li.className = "card" + (entry.state === "refused" ? " over" : "");
    li.setAttribute("data-key", entry.key);
    what.textContent = entry.tracking_no ||
      (entry.kind === "visit" ? label("visit") + (entry.place ? " · " + entry.place : "") : (entry.summary || "").slice(0, 40));
    line.textContent = label("captured") + "：" + local(entry.captured_at) + " · " + label(entry.state) +
      (entry.kind === "visit" ? " · " + label("households") + " " + entry.households : "");
    li.appendChild(what); li.appendChild(line);
    if (entry.errors) {
      Object.keys(entry.errors).forEach(function (f) {
        var e = document.createElement("span"); e.className = "field-error"; e.textContent = entry.errors[f]; li.appendChild(e);
      });
      var drop = document.createElement("button");
      drop.type = "button"; drop.className = "link"; drop.textContent = label("remove");
      drop.addEventListener("click", function () {
        save(load().filter(function (x) { return x.key !== entry.key; })); render();
      });
      li.appendChild(drop);
    }
    return li;
  }

  function render() {
    var entries = load(), waiting = document.getElementById("field-waiting"), synced = document.getElementById("field-synced");
    waiting.textContent = ""; synced.textContent = "";
    entries.forEach(function (e) { (e.state === "synced" ? synced : waiting).appendChild(item(e)); });
    document.querySelector("section.captures").hidden = entries.length === 0;
    var net = document.getElementById("field-net");
    net.hidden = false;
    net.textContent = (navigator.onLine ? label("online") : label("offline")) + " · " + label("waiting") + " " +
      entries.filter(function (e) { return e.state === "waiting"; }).length;
  }

  function capture(form, kind) {
    var entry = {key: newKey(), kind: kind, captured_at: new Date().toISOString(), state: "waiting"};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf" || el.name === "key" || el.name === "kind") { return; }
      if (el.type === "checkbox") { if (el.checked) { entry[el.name] = el.value; } return; }
      entry[el.name] = el.value;
    });
    if (kind === "visit" && form.elements.hamlet.selectedIndex > 0) {     // shown on the phone, not sent on
      entry.place = form.elements.hamlet.options[form.elements.hamlet.selectedIndex].text;
    }
    var entries = load();
    entries.push(entry);
    save(entries);
    form.reset();
    Array.prototype.forEach.call(form.querySelectorAll("select"), function (s) { s.dispatchEvent(new Event("change")); });
    var net = document.getElementById("field-net");
    render();
    net.textContent = label("kept") + " " + net.textContent;
    sync();
  }

  ["report", "visit"].forEach(function (kind) {
    var form = document.getElementById("field-" + kind);
    if (form) {
      form.addEventListener("submit", function (ev) {
        if (!form.checkValidity()) { return; }
        ev.preventDefault();
        capture(form, kind);
      });
    }
  });

  function update(key, change) {
    var entries = load();
    entries.forEach(function (e) { if (e.key === key) { Object.keys(change).forEach(function (k) { e[k] = change[k]; }); } });
    save(entries);
    render();
  }

  // One entry after another, each under its own key: a lost answer is sent again and the server
  // answers it as before (the same tracking number), so nothing registers twice.
  function sync() {
    var waiting = load().filter(function (e) { return e.state === "waiting"; });
    if (syncing) { again = true; }
    if (syncing || !waiting.length) { return Promise.resolve(); }
    syncing = true;
    return fetch("/console/field/token", {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      var json = (r.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      if (!r.ok || !json) { throw new Error("login"); }
      return r.json();
    }).then(function (me) {
      if (me.user !== user) { throw new Error("login"); }
      return waiting.reduce(function (chain, entry) {
        return chain.then(function () {
          var body = {};
          Object.keys(entry).forEach(function (k) { if (["state", "errors"].indexOf(k) < 0) { body[k] = entry[k]; } });
          return fetch("/console/field/sync", {method: "POST", credentials: "same-origin", cache: "no-store",
            headers: {"Content-Type": "application/json", "X-CSRF-Token": me.csrf}, body: JSON.stringify(body)})
            .then(function (r) {
              return r.json().catch(function () { return {}; }).then(function (answer) {
                if (r.status === 201) {           // kept on the phone: what it was and its number, no personal data
                  update(entry.key, {state: "synced", tracking_no: answer.tracking_no, synced_at: new Date().toISOString(),
                                     name: null, phone: null, summary: null});
                } else if (r.status === 422) {
                  update(entry.key, {state: "refused", errors: answer.errors || {}});
                } else if (r.status !== 425) {     // 425: the phone's clock is ahead; try again later
                  throw new Error(r.status === 401 ? "login" : "later");
                }
              });
            });
        });
      }, Promise.resolve());
    }).catch(function (e) {
      if (e.message === "login") {
        var net = document.getElementById("field-net");
        render();
        net.textContent += " · " + label("login");
      }
    }).then(function () {
      syncing = false; render();
      if (again) { again = false; sync(); }     // recorded while this round was sending
    });
  }

  var now = document.getElementById("field-sync");
  if (now) { now.addEventListener("click", function () { sync(); }); }
  window.addEventListener("online", function () { render(); sync(); });
  window.addEventListener("offline", render);
  setInterval(function () { if (navigator.onLine) { sync(); } }, 20000);
  render();
  sync();
})();
