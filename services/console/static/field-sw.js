// Minqing field capture's service worker, served at /console/field/sw.js so that its scope is the
// field page's folder. It keeps the page, its script, style and icons, and answers from them when the
// network is gone; the page itself is always asked of the network first (a fresh session, a fresh
// catalogue). Nothing else passes through it: syncing (POST) and every other page go to the network.
"use strict";
var CACHE = "minqing-field-v1";
var PAGE = "/console/field/";
var ASSETS = [PAGE, "/static/console.css", "/static/console.js", "/static/field.js", "/static/field.webmanifest",
              "/static/field-icon.svg", "/static/field-icon-192.png"];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.addAll(ASSETS); })
    .then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n.indexOf("minqing-field-") === 0 && n !== CACHE; })
      .map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (event) {
  var request = event.request, url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) { return; }
  var path = url.pathname, kept = path === PAGE ? PAGE : ASSETS.indexOf(path) >= 0 ? path : null;
  if (kept === null) { return; }
  event.respondWith(fetch(request).then(function (response) {
    // keep the page only as the cadre's own page (a redirect to the login page is not it)
    if (response.ok && !response.redirected && response.type === "basic") {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(kept, copy); });
    }
    return response;
  }).catch(function () {
    return caches.match(kept).then(function (hit) { return hit || Response.error(); });
  }));
});
