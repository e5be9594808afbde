"""A real browser for the tests: headless Chromium (Debian's chromium-headless-shell) opens a
page with the network cut off, and reports what it drew and every URL it asked for."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

BROWSER = "chromium-headless-shell"
# Elements with no closing tag: never on the stack of open elements.
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def open_page(page, workdir, screenshot=None):
    """(the DOM after its scripts ran, the URLs it requested) of `page`, a local HTML file.

    Every request outside the machine goes to a closed proxy port, so a page that needs the
    network draws nothing; Chromium's net log still records what it asked for.
    """
    executable = shutil.which(BROWSER)
    assert executable, f"{BROWSER} is not installed: apt-get install {BROWSER} (.ci/run does)"
    net_log = Path(workdir) / "net-log.json"
    command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
               "--virtual-time-budget=15000", f"--log-net-log={net_log}", "--window-size=1280,2000"]
    if screenshot:
        command.append(f"--screenshot={screenshot}")
    else:
        command.append("--dump-dom")
    result = subprocess.run([*command, Path(page).resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout, requested_urls(net_log)


def requested_urls(net_log):
    """Every URL of a request in a Chromium net log."""
    log = json.loads(net_log.read_text())
    return {event["params"]["url"] for event in log["events"] if "url" in event.get("params", {})}


class DrawnElements(HTMLParser):
    """The ids, among `ids`, of elements that hold a <canvas> or an <svg>: what vega-embed draws."""

    def __init__(self, ids):
        super().__init__()
        self.ids, self.open, self.drawn = set(ids), [], set()

    def handle_starttag(self, tag, attrs):
        if tag in ("canvas", "svg"):
            self.drawn.update(element_id for element_id in self.open if element_id in self.ids)
        if tag not in VOID_ELEMENTS:
            self.open.append(dict(attrs).get("id"))

    def handle_endtag(self, tag):
        if tag not in VOID_ELEMENTS and self.open:
            self.open.pop()


def drawn_plots(dom, plot_ids):
    parser = DrawnElements(plot_ids)
    parser.feed(dom)
    return parser.drawn
