"""What a user looks at, in a real browser: Debian's headless Chromium (``./setup.sh`` installs it
as root), driven by Playwright. report.html of a trained run, and the Ray dashboard of a running
one, opened with the run's access token."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TRAIN, session_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(require):
    """A headless Chromium (the system's), or a skip (under CI: a failure) without one."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    require(executable, "no chromium: ./setup.sh installs Debian's as root")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "no playwright: ./setup.sh installs it with the test tools")
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def test_report_html_reads_as_a_user_sees_it(trained_run, browser):
    """The verdict is the first paragraph under the title, every image loads, no raw markdown
    shows, and the page logs no error."""
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((trained_run / "report.html").as_uri())
    page.wait_for_load_state("load")
    first = page.evaluate("document.querySelector('h1').nextElementSibling.innerText")
    assert first.startswith("Verdict: the best trained candidate")
    assert page.evaluate("document.querySelector('h1 + p > strong') !== null")  # in bold
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(images) >= 5 and all(width > 0 for _, width in images), images
    text = page.evaluate("document.body.innerText")
    assert "**" not in text and "`" not in text  # markdown rendered, not shown
    assert page.evaluate("document.querySelectorAll('table').length") >= 4
    assert errors == []


def test_the_ray_dashboard_opens_with_the_token_and_shows_the_running_job(tmp_path, browser):
    """As the README says: the token of the run's Ray session, as the dashboard's cookie; its
    Jobs page lists the running search, its Actors page names the training actors by model."""
    run = tmp_path / "run"
    port = "8297"
    flags = [*TRAIN[: TRAIN.index("--epochs")], "--epochs", "6", "--train-subset", "4000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.search", "--no-progress", *flags, "--dashboard-port", port,
         "--out", str(run)],
        cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        token = run / ".ray_home" / ".ray" / "auth_token"
        deadline = time.time() + 300
        while not (token.is_file() and (run / "tune").is_dir()):
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.5)
        context = browser.new_context()
        url = f"http://127.0.0.1:{port}"
        context.add_cookies(
            [{"name": "ray-authentication-token", "value": token.read_text().strip(), "url": url}]
        )
        page = context.new_page()
        page.goto(f"{url}/#/jobs")
        page.wait_for_function(
            "document.body.innerText.includes('nas.search') "
            "&& document.body.innerText.includes('RUNNING')",
            timeout=60_000,
        )
        # each training actor carries its trial's name (the baseline's is its zoo name)
        page.goto(f"{url}/#/actors")
        page.wait_for_function(
            "document.body.innerText.includes('bireal_resnet18')", timeout=120_000
        )
        refused = browser.new_page()  # without the token: the dashboard asks for it
        refused.goto(f"{url}/#/jobs")
        refused.wait_for_function(
            "document.body.innerText.toLowerCase().includes('token')", timeout=60_000
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)
        deadline = time.time() + 30
        while session_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
