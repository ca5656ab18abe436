"""A report as a reader sees it: rendered by headless Chromium, figures loaded, a screenshot."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fedpriv.errors import FedprivError

# Debian's package and the names other distributions use.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars")
WIDTH = 1200
# A laptop's first screen at WIDTH: what a reader sees before scrolling.
FIRST_SCREEN = 1000
# Runs in the page once everything has loaded; the title carries the answer out of --dump-dom.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.title = "fedpriv-probe " + JSON.stringify({
    images: images.length,
    loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    height: document.documentElement.scrollHeight,
    first: (() => {
      const lead = document.getElementById("first-screen");
      if (!lead) return null;
      const table = lead.querySelector("table"), image = lead.querySelector("img");
      return {
        table: table ? table.getBoundingClientRect().bottom : null,
        image: image ? image.getBoundingClientRect().bottom : null,
      };
    })(),
  });
});
</script>"""


class BrowserError(FedprivError):
    """Chromium is missing or could not render the page."""


@dataclass(frozen=True)
class Rendering:
    """What the browser saw: images on the page, how many loaded, the page's height (px)."""

    images: int
    loaded: int
    height: int
    # Where the first screen's summary table and picture end (px from the top; ``None``
    # where the page has no such element).
    table_bottom: float | None = None
    picture_bottom: float | None = None


def find_browser() -> str | None:
    """The path of a Chromium executable, if one is installed."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _browser() -> str:
    browser = find_browser()
    if browser is None:
        raise BrowserError(
            "no Chromium found (install Debian's `chromium` package: apt-get install chromium)"
        )
    return browser


def render(report: Path, timeout: float = 120.0) -> Rendering:
    """Load ``report`` in headless Chromium and count the images that really decoded."""
    page = report.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / report.name
        probe.write_text(page.replace("</body>", PROBE + "</body>", 1))
        done = subprocess.run(
            [
                _browser(),
                *FLAGS,
                f"--window-size={WIDTH},{FIRST_SCREEN}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    found = re.search(r"<title>fedpriv-probe (\{.*?\})</title>", done.stdout)
    if found is None:
        raise BrowserError(f"Chromium did not render {report}: {done.stderr.strip()[-500:]}")
    data = json.loads(found.group(1))
    first = data.get("first") or {}
    return Rendering(
        int(data["images"]),
        int(data["loaded"]),
        int(data["height"]),
        first.get("table"),
        first.get("image"),
    )


def screenshot(report: Path, out: Path, timeout: float = 120.0) -> Rendering:
    """A PNG of the whole page (the window sized to its height), and what was rendered."""
    rendering = render(report, timeout)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            _browser(),
            *FLAGS,
            f"--window-size={WIDTH},{rendering.height}",
            f"--screenshot={out.resolve()}",
            report.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if not out.exists():
        raise BrowserError(f"Chromium wrote no screenshot: {done.stderr.strip()[-500:]}")
    return rendering


def main(argv: list[str] | None = None) -> int:
    """``python -m fedpriv.report.browser REPORT [--screenshot PNG]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path, help="report.html")
    parser.add_argument("--screenshot", type=Path, help="write a full-page PNG here")
    args = parser.parse_args(argv)
    if args.screenshot:
        rendering = screenshot(args.report, args.screenshot)
    else:
        rendering = render(args.report)
    print(f"{rendering.loaded} of {rendering.images} images loaded; page {rendering.height} px")
    return 0 if rendering.loaded == rendering.images else 1


if __name__ == "__main__":
    raise SystemExit(main())
