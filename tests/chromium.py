"""Headless Chromium for the tests of the HTML notes, driven with the standard library only.

Chromium speaks its DevTools protocol over a pipe when started with
``--remote-debugging-pipe``: JSON messages, each ended by a NUL byte, read from file
descriptor 3 and written to 4. That is all a test needs — open a file, wait for layout, run
the probe below, read the console and the network events, set a phone's viewport, take a
screenshot, print to PDF — so no Selenium, no chromedriver and no websocket client are needed,
and nothing is downloaded (the browser is the system's: Debian's ``chromium``).

:func:`find_chromium` says where the browser is (``$BNSYM_CHROMIUM``, else ``chromium`` on
the PATH); :class:`Chromium` is one browser process with one tab; :meth:`Chromium.check` opens
a page and returns a :class:`Report` of everything that is wrong with it.

``python tests/chromium.py PAGE.html [--shot PNG] [--phone]`` prints a page's report.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Flags for a quiet, offline, deterministic browser: no first-run tab, no update checks, no
#: sync, no GPU (headless servers have none), the sandbox off (CI runs as root, where
#: Chromium refuses to start sandboxed), scrollbars that take no width, pixels at scale 1.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-quic",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
#: Seconds to wait for any one reply of the browser before giving up (a hung browser fails a
#: test, it never hangs the run).
TIMEOUT = 60.0
DESKTOP = (1280, 800)
PHONE = (390, 844)  # an iPhone 12–15's CSS pixels

#: The elements of MathML Core (https://w3c.github.io/mathml-core/#mathml-elements-and-attributes):
#: anything else inside <math> (mfenced, menclose, mlabeledtr, …) is not laid out by browsers
#: that implement only Core (Chromium).
MATHML_CORE = sorted(
    """math annotation annotation-xml maction merror mfrac mi mmultiscripts mn mo mover
    mpadded mphantom mprescripts mroot mrow ms mspace msqrt mstyle msub msubsup msup mtable
    mtd mtext mtr munder munderover none semantics""".split()
)

#: The probe, run in the page once it is laid out. It returns what a reader would see broken:
#: a formula with no box, <merror>, an element outside MathML Core, an entity left as text, a
#: token with no box, a label clipped by its SVG box, a formula block cut off on its left, the
#: page scrolling sideways; and, for the report, counts and the widest formula.
PROBE = """
(core => {
  const maths = [...document.querySelectorAll('math')];
  const short = e => e.outerHTML.slice(0, 160);
  const out = {maths: maths.length, empty: [], merror: [], not_core: [], entities: [],
               zero_tokens: [], clipped_labels: [], cut_left: []};
  maths.forEach(m => {
    const r = m.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) out.empty.push(short(m));
    m.querySelectorAll('merror').forEach(e => out.merror.push(short(e)));
    m.querySelectorAll('*').forEach(e => {
      if (e.namespaceURI !== 'http://www.w3.org/1998/Math/MathML' || !core.includes(e.localName))
        out.not_core.push(e.localName);
    });
    if (/&[A-Za-z#0-9]+;/.test(m.textContent)) out.entities.push(m.textContent.slice(0, 80));
    m.querySelectorAll('mi, mn, mtext').forEach(t => {
      const b = t.getBoundingClientRect();
      if (t.textContent.trim() && !(b.width > 0 && b.height > 0)) out.zero_tokens.push(short(t));
    });
  });
  document.querySelectorAll('foreignObject').forEach(fo => {
    const f = fo.getBoundingClientRect(), m = fo.querySelector('math');
    const r = m ? m.getBoundingClientRect() : null;
    if (!r || r.width === 0 || r.left < f.left - 0.5 || r.right > f.right + 0.5 ||
        r.top < f.top - 0.5 || r.bottom > f.bottom + 0.5) out.clipped_labels.push(fo.textContent);
  });
  document.querySelectorAll('.eq').forEach(b => {
    const m = b.querySelector('math');
    if (m && m.getBoundingClientRect().left < b.getBoundingClientRect().left - 0.5)
      out.cut_left.push(m.textContent.slice(0, 60));
  });
  const root = document.documentElement;
  out.scroll_width = root.scrollWidth;
  out.inner_width = window.innerWidth;
  out.blocks_scrolling = [...document.querySelectorAll('.eq, .wrap, figure')].filter(
    b => b.scrollWidth > b.clientWidth + 1).length;
  out.widest_math = Math.max(0, ...maths.map(m => m.getBoundingClientRect().width));
  out.svg = [...document.querySelectorAll('svg')].map(s => s.getBoundingClientRect().width);
  return out;
})
"""

#: What in a probe's result is a defect (each must be empty).
DEFECTS = ("empty", "merror", "not_core", "entities", "zero_tokens", "clipped_labels", "cut_left")


class BrowserError(RuntimeError):
    """The browser did not start, did not answer in time, or refused a command."""


def find_chromium() -> str | None:
    """The browser to test with: ``$BNSYM_CHROMIUM`` if set (None if that is no program),
    else the first of chromium, chromium-browser, google-chrome on the PATH; None if none."""
    given = os.environ.get("BNSYM_CHROMIUM")
    if given:
        return shutil.which(given)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Report:
    """What :meth:`Chromium.check` found on one page, at one viewport width."""

    page: str
    width: int
    probe: dict[str, Any]
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> dict[str, Any]:
        """Every defect found, by kind; empty when the page is fine."""
        found = {k: self.probe[k] for k in DEFECTS if self.probe[k]}
        if self.console:
            found["console"] = self.console
        if self.requests:
            found["requests"] = self.requests
        if self.probe["scroll_width"] > self.width:
            found["page_scrolls_sideways"] = f"{self.probe['scroll_width']} px wide in {self.width}"
        return found

    def __str__(self) -> str:
        head = f"{self.page} at {self.width} px: {self.probe['maths']} <math>"
        problems = self.problems
        if not problems:
            return head + ", no problem"
        lines = [head + f", {len(problems)} kind(s) of problem:"]
        for kind, what in problems.items():
            items = what if isinstance(what, list) else [what]
            lines.append(f"  {kind} ({len(items)}): " + "; ".join(map(str, items[:3]))[:400])
        return "\n".join(lines)


class Chromium:
    """One headless Chromium with one tab, spoken to over ``--remote-debugging-pipe``.

    Use as a context manager; the browser and its temporary profile are gone afterwards,
    whatever happened.
    """

    def __init__(self, binary: str | None = None) -> None:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError("no Chromium found: install chromium or set BNSYM_CHROMIUM")
        self.profile = tempfile.mkdtemp(prefix="bnsym-chromium-")
        self._log = open(Path(self.profile, "stderr.log"), "wb")  # noqa: SIM115 - closed in close()
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def give_fds() -> None:  # in the child, before exec: the protocol's fds 3 and 4
            # dup first: a pipe end may itself be 3 or 4, and dup2(fd, fd) would keep its
            # close-on-exec flag; dup2 onto another number makes an inheritable copy
            r, w = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],  # fmt: skip
            # close_fds=False: with it, Python closes every fd but pass_fds after give_fds ran,
            # fds 3 and 4 included; other fds are not inherited anyway (PEP 446)
            close_fds=False,
            preexec_fn=give_fds,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", tab=True)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"no answer from Chromium within {TIMEOUT:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe; its log: {self.log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)  # type: ignore[no-any-return]

    def call(self, method: str, tab: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command (to the tab when ``tab``) and return its result; the events that
        arrive meanwhile are kept in :attr:`events`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if tab:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._message(deadline)
            if reply.get("id") != self._next_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise BrowserError(f"{method}: {reply['error'].get('message')}")
            return reply["result"]  # type: ignore[no-any-return]

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (one already received, or the next to come)."""
        for k, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(k)
        deadline = time.monotonic() + TIMEOUT
        while True:
            event = self._message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call(
            "Runtime.evaluate",
            tab=True,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"the probe failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # -- what the tests do

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """Lay pages out at ``width`` × ``height`` CSS pixels (a phone: ``mobile``, scale 2)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            tab=True,
            width=width,
            height=height,
            deviceScaleFactor=2 if mobile else 1,
            mobile=mobile,
        )

    def open(self, page: Path, media: str = "") -> None:
        """Load ``page`` (a file) and wait until it is laid out with its fonts. ``media``:
        "print" lays it out as printed."""
        self.call("Emulation.setEmulatedMedia", tab=True, media=media)
        self.events.clear()
        self.call("Page.navigate", tab=True, url=page.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        # fonts loaded, then two frames: layout is final
        self.evaluate(
            "document.fonts.ready.then(() => new Promise(r => requestAnimationFrame("
            "() => requestAnimationFrame(r))))"
        )

    def check(
        self, page: Path, width: int = DESKTOP[0], mobile: bool = False, media: str = ""
    ) -> Report:
        """Open ``page`` at ``width`` (``media="print"``: laid out as printed) and report its
        defects: the probe's, console messages (errors and warnings) and every request it made
        besides its own file."""
        self.viewport(width, PHONE[1] if mobile else DESKTOP[1], mobile)
        self.open(page, media)
        probe = self.evaluate(f"{PROBE}({json.dumps(MATHML_CORE)})")
        own = page.resolve().as_uri()
        console, requests = [], []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                console.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning"):
                console.append(" ".join(str(a.get("value")) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                console.append(str(params["exceptionDetails"].get("text")))
            elif method == "Network.requestWillBeSent" and params["request"]["url"] != own:
                requests.append(params["request"]["url"])
        return Report(page.name, width, probe, console, requests)

    def screenshot(self, path: Path, width: int = DESKTOP[0], height: int = DESKTOP[1]) -> None:
        """A PNG of the first screen of the page last opened, ``width`` × ``height``."""
        self.viewport(width, height)
        data = self.call("Page.captureScreenshot", tab=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def pdf(self) -> bytes:
        """The page last opened, printed (A4)."""
        data = self.call(
            "Page.printToPDF", tab=True, paperWidth=8.27, paperHeight=11.69, printBackground=True
        )["data"]
        return base64.b64decode(data)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self.profile, "stderr.log").read_text(errors="replace")[-600:]
        return ""

    def close(self) -> None:
        """End the browser (politely, then by force) and remove its profile."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                message = {"id": self._next_id + 1, "method": "Browser.close"}
                os.write(self._to_browser, json.dumps(message).encode() + b"\0")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Report what is wrong with an HTML page.")
    parser.add_argument("page", type=Path)
    parser.add_argument("--shot", type=Path, help="a PNG of the first screen (desktop)")
    parser.add_argument("--phone", action="store_true", help="also check at 390 px")
    parser.add_argument("--pdf", type=Path, help="the page printed (A4)")
    args = parser.parse_args(argv)
    with Chromium() as browser:
        reports = [browser.check(args.page)]
        if args.shot:
            browser.screenshot(args.shot)
        if args.pdf:
            browser.open(args.page, media="print")
            args.pdf.write_bytes(browser.pdf())
        if args.phone:
            reports.append(browser.check(args.page, PHONE[0], mobile=True))
    for report in reports:
        print(report)
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
