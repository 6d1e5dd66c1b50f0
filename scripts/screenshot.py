"""Photograph the review page for the README: see scripts/screenshot, which runs this with the project's Python."""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# The demo chapters the review page shows: people, their second factors, the teacher's rules, the reviewers'
# decisions. The later chapters (evaluations, promotion, reports) add nothing to this page and minutes to the run.
CHAPTERS = ["evaluation.demo.users", "evaluation.demo.second_factors", "evaluation.demo.teacher",
            "evaluation.demo.review"]
REVIEWER, PASSWORD = "rita", "rita-demo-2026"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, text=True,
                          stdout=subprocess.PIPE)
    return done.stdout


def _wait_until_served(url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The web app exited ({server.returncode}) before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (our own loopback server)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"The web app did not answer {url} within {seconds:.0f} s")


def _second_factor_code(env: dict[str, str]) -> str:
    printed = _manage("demo_logins", "--codes", env=env)
    found = re.search(rf"\b{REVIEWER}\b.*?code now: (\d{{6}})", printed)
    if found is None:
        raise SystemExit(f"demo_logins printed no code for {REVIEWER}:\n{printed}")
    return found.group(1)


def screenshot(out: Path, width: int, height: int, data: Path | None = None) -> None:
    """Seed, serve and photograph the review page into ``out``; ``data`` keeps the database for another shot."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="pld-screenshot-") as scratch:
        tmp = str(data or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        port = _free_port()
        env = {
            **os.environ, "DJANGO_DEBUG": "1", "PLD_VAR_DIR": tmp, "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
            "PLD_LOCAL_TEACHER_PORT": str(_free_port()), "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        _manage("migrate", "--noinput", env=env)
        for chapter in CHAPTERS:
            print(f"==> {chapter}", flush=True)
            _manage("seed_demo", "--only", chapter, env=env)
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_served(f"{base}/login/", server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(f"{base}/login/?next=/review/")
                page.fill("#id_login", REVIEWER)
                page.fill("#id_password", PASSWORD)
                page.click("main button[type=submit]")
                page.wait_for_selector("#id_code")
                page.fill("#id_code", _second_factor_code(env))
                page.click("main button[type=submit]")
                page.wait_for_url("**/review/*")
                # The rule page of the queue's first rule: what a reviewer reads before approving, editing or
                # rejecting it, with the signature the decision needs.
                page.goto(f"{base}/review/")
                page.click("table a[href^='/rules/']")
                page.wait_for_selector("article[data-rule-id]")
                page.wait_for_load_state("networkidle")
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"Wrote {out} ({width} × {height} px)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "review.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--data", type=Path, help="Keep the seeded database here (a second run reuses it)")
    options = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is absent: apt-get install chromium")
    screenshot(options.out, options.width, options.height, options.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
