// Minqing live lists (docs/console.md, "Live updates"): the worklist and the board ask the console
// every few seconds whether the ledger moved and, if so, whether what the page shows changed; when it
// did, the page's main part is fetched again and swapped in. Without this file the page is a plain
// page (reload it to see what is new).
(function () {
  "use strict";
  var me = document.currentScript, main = document.getElementById("main");
  if (!me || !main || !window.fetch || !window.DOMParser) { return; }
  var view = me.getAttribute("data-live"), said = me.getAttribute("data-updated") || "";
  // each ledger position is looked at by two polls in a row: the read models follow the ledger a
  // moment later, so a change may show one poll after the position moved
  var positions = [-1, -1], digest = null, last = 0, busy = false, shown = Date.now();
  var note = document.createElement("p");
  note.className = "hint live-note"; note.setAttribute("role", "status");
  main.insertBefore(note, main.firstChild);

  function every() { return 1000 * (parseFloat(main.getAttribute("data-live-every")) || 15); }

  function refresh() {
    shown = Date.now();
    return fetch(location.href, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (!r.ok || r.redirected) { return; }
      return r.text().then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (!fresh) { return; }
        var children = Array.prototype.slice.call(fresh.childNodes);
        main.textContent = "";
        main.appendChild(note);
        children.forEach(function (n) { main.appendChild(document.importNode(n, true)); });
        var d = new Date(), p = function (n) { return (n < 10 ? "0" : "") + n; };
        note.textContent = said + " " + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
      });
    });
  }

  function poll() {
    busy = true; last = Date.now();
    return fetch("/console/live/" + view + "?after=" + positions[0], {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (!r.ok || (r.headers.get("Content-Type") || "").indexOf("application/json") !== 0) { return null; }
        return r.json();
      }).then(function (answer) {
        if (!answer) { return; }
        positions = [positions[1], answer.position === null ? -1 : answer.position];
        if (!answer.digest) { return; }
        var changed = digest !== null && answer.digest !== digest;
        digest = answer.digest;
        if (changed) { return refresh(); }
      }).catch(function () {}).then(function () { busy = false; });
  }

  setInterval(function () {
    if (busy || document.hidden) { return; }
    if (Date.now() - shown >= 300000) { busy = true; refresh().catch(function () {}).then(function () { busy = false; }); }
    else if (Date.now() - last >= every()) { poll(); }        // the time left to each deadline, every 5 minutes
  }, 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden && !busy) { poll(); } });
  poll();
})();
