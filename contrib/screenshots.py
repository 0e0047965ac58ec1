"""README's screenshots, taken from `mailticket demo` in Chromium: `python contrib/screenshots.py [--language en]`."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent.parent / "docs"
URL_LINE = re.compile(r"mailticket demo running at (http://\S+?)/?\s")
LOGIN = re.compile(r"log in as (\w+) / (\S+) \(admin\)")
READY = re.compile(r"database:\s+\S+")
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 860}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--language", default="pt-BR", choices=("pt-BR", "en"))
    args = parser.parse_args()
    demo = subprocess.Popen([sys.executable, "-m", "mailticket", "demo", "--port", "0", "--language", args.language],
                            stdout=subprocess.PIPE, text=True)
    banner = ""
    try:
        while not READY.search(banner):
            line = demo.stdout.readline()
            if not line:
                raise SystemExit(f"the demo ended early:\n{banner}")
            banner += line
        url, (user, password) = URL_LINE.search(banner).group(1), LOGIN.search(banner).group(1, 2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT, locale=args.language)
            page.goto(f"{url}/login")
            page.fill("#username", user)
            page.fill("#password", password)
            page.click("#login-button")
            page.wait_for_url(f"{url}/")
            page.wait_for_selector("tbody tr")  # the sample mail has become tickets
            page.locator("tbody tr a").first.click()
            page.click("#claim-button")
            page.wait_for_selector("#claim-countdown")
            page.screenshot(path=str(DOCS / "ticket-page.png"))
            page.goto(f"{url}/report")
            page.screenshot(path=str(DOCS / "report-page.png"), full_page=True)
            browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    print(f"wrote {DOCS / 'ticket-page.png'} and {DOCS / 'report-page.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
