"""A small driver for headless Chromium over the DevTools protocol (Debian's `chromium` and
websocket-client, pinned in requirements-dev.lock): one browser for a whole test module, real clicks
and typing, screenshots at phone and desktop sizes. No chromedriver to keep in step with the browser.

Only what the console's tests need: open a URL, fill a field, pick an option, click and wait for the
page the click leads to, read the DOM, take a screenshot at a size."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

SIZES = {"phone": (390, 844, 1.0, True), "desktop": (1280, 800, 1.0, False)}   # width, height, scale, mobile


class BrowserError(AssertionError):
    pass


class Chromium:
    def __init__(self, timeout: float = 30):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            raise FileNotFoundError("chromium is not installed (make test installs it)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="minqing-cdp-")
        self.proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                      "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
                                      f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout,
                                              suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []      # protocol events that arrived while waiting for an answer
        self.send("Page.enable")
        self.size("desktop")

    # ---- protocol ---------------------------------------------------------------------------------

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """A command to the page (or, with `session`, to a target attached in flat mode: a service worker)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params,
                                 **({"sessionId": session} if session else {})}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
                del self.events[:-500]

    def wait_event(self, method: str, seconds: float | None = None) -> dict:
        """The next protocol event `method` (kept while commands were answered, else read as it comes)."""
        deadline = time.monotonic() + (seconds or self.timeout)
        while True:
            for i, message in enumerate(self.events):
                if message["method"] == method:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise BrowserError(f"no {method} event")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            finally:
                self.ws.settimeout(self.timeout)
            if "method" in message:
                self.events.append(message)

    def offline(self, yes: bool, *sessions: str) -> None:
        """Cut the network (or give it back) for the page and each attached target (its service worker:
        the page's emulation does not cover the worker's own fetches)."""
        for session in (None, *sessions):
            self.send("Network.enable", session=session)
            self.send("Network.emulateNetworkConditions", session=session, offline=yes, latency=0,
                      downloadThroughput=-1, uploadThroughput=-1)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # ---- what a person does -----------------------------------------------------------------------

    def _page_id(self):
        return self.js("performance.timeOrigin + ':' + document.readyState")

    def _wait_new_page(self, before: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                now = self._page_id()
            except (BrowserError, websocket.WebSocketException):
                now = None          # mid-navigation
            if now and now != before and now.endswith(":complete"):
                return
            time.sleep(0.05)
        raise BrowserError("the page did not load")

    def open(self, url: str) -> None:
        before = self._page_id()
        self.send("Page.navigate", url=url)
        self._wait_new_page(before)

    def fill(self, selector: str, value: str) -> None:
        """Types into a field (or picks a <select>'s option by value) and fires its change event."""
        ok = self.js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false;
            e.focus(); e.value = {json.dumps(value)};
            e.dispatchEvent(new Event('input', {{bubbles: true}})); e.dispatchEvent(new Event('change', {{bubbles: true}}));
            return true; }})()""")
        if not ok:
            raise BrowserError(f"no field {selector} on {self.url}")

    def click(self, selector: str, navigates: bool = True) -> None:
        """A real mouse click in the middle of the element (scrolled into view)."""
        box = self.js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;
            e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        if box is None:
            raise BrowserError(f"nothing to click at {selector} on {self.url}")
        before = self._page_id()
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        if navigates:
            self._wait_new_page(before)

    def text(self, selector: str = "body") -> str:
        return self.js(f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText") or ""

    def html(self) -> str:
        return self.js("document.documentElement.outerHTML")

    @property
    def url(self) -> str:
        return self.js("location.href")

    def size(self, name: str) -> None:
        width, height, scale, mobile = SIZES[name]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=scale,
                  mobile=mobile)

    def screenshot(self, path: Path, size: str, longest: int = 2400) -> Path:
        """The whole page at `size` (phone or desktop) — its width, and its full height up to `longest`
        pixels — so a review sees what lies below the first screen too."""
        self.size(size)
        self.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        width, _, scale, _ = SIZES[size]
        height = min(longest, max(SIZES[size][1], int(self.js("document.documentElement.scrollHeight"))))
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": scale})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
