"""The page in a real headless Chromium: log in, upload a CADMA image, draft, see boxes, edit, a conflicting save merged, sign, export."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from test_serve_durability import free_port, start_server

from radscribe.serve import Accounts, Storage

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SAMPLE = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]


def wait_until(page, expression: str, timeout_s: float = 30) -> None:
    """Poll a JavaScript expression until it is truthy (wait_for_function would need eval, which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {expression}")
        time.sleep(0.2)


def test_draft_edit_sign_export_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'radscribe[browser]')")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    port = free_port()
    storage = Storage(tmp_path / "data")
    Accounts(storage).add("dr.rossi", "radiologist", "browser-password-1")
    token = Accounts(storage).issue("dr.rossi", "api", 3600)  # a colleague's script editing the same report
    storage.close()
    server = start_server(tmp_path / "data", port, model=None, token=token)  # the embedded default model
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, viewport={"width": 1280, "height": 800},
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
            )
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#login:not([hidden])")
            page.fill("#login-name", "dr.rossi")
            page.fill("#login-password", "wrong password")
            page.click("#login-submit")
            wait_until(page, "document.getElementById('login-error').textContent.length > 0")
            page.fill("#login-password", "browser-password-1")
            page.click("#login-submit")
            wait_until(page, "document.getElementById('user').textContent.startsWith('dr.rossi')")
            page.set_input_files("#upload", str(SAMPLE))
            wait_until(page, "document.getElementById('canvas').dataset.loaded === '1'", 120)
            page.keyboard.press("d")
            wait_until(page, "document.getElementById('status').textContent.startsWith('draft ready')", 300)
            drawn = page.evaluate("window.radscribe.S.drawn")
            assert drawn and all(item["rect"][0] >= 0 for item in drawn)
            pixels = page.evaluate("""() => { const c = document.getElementById('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let lit = 0; for (let i = 0; i < d.length; i += 4) lit += d[i] > 0; return lit; }""")
            assert pixels > 1000  # the radiograph is on the canvas

            page.hover("#field-vertebrae\\.count")
            # the count's boxes are the vertebrae; a curve's span and apex boxes belong to their finding
            vertebrae = [item for item in drawn if not item["key"].startswith("finding:")]
            assert vertebrae and page.evaluate("window.radscribe.S.drawn.filter(b => b.highlighted).length") == len(vertebrae)

            page.keyboard.press("s")  # save version 1
            wait_until(page, "document.getElementById('status').textContent.startsWith('saved version 1')", 120)
            study_id = page.evaluate("window.radscribe.S.study.id")

            # A colleague saves version 2 (a different impression) while this page still edits version 1.
            theirs = page.evaluate("JSON.parse(JSON.stringify(window.radscribe.S.doc))")
            theirs["impression"] = "Colleague's impression."
            theirs["fields"]["alignment.alignment"] = "normal"  # this page will say scoliosis
            other = httpx.put(f"http://127.0.0.1:{port}/api/studies/{study_id}/report", json=theirs,
                              headers={"Authorization": f"Bearer {token}", "If-Match": page.evaluate("window.radscribe.S.etag")})
            assert other.status_code == 200, other.text

            page.select_option("#input-alignment\\.alignment", "scoliosis")
            page.fill("#impression", "Mild scoliosis, reviewed in the browser.")
            page.click("#canvas")  # leave the text box so shortcuts apply
            page.keyboard.press("Control+Enter")  # save-and-sign meets the colleague's version: 412, both versions shown
            page.wait_for_selector("#conflict:not([hidden])", timeout=120_000)
            rows = page.evaluate("[...document.querySelectorAll('#conflict-table tbody tr')].map(r => r.dataset.part)")
            assert "impression" in rows and "fields.alignment.alignment" in rows
            assert "Colleague's impression." in page.inner_text("#conflict-table")
            page.click("#conflict-merge")  # keep every one of my parts, on top of version 2
            page.click("#canvas")
            page.keyboard.press("Control+Enter")
            wait_until(page, "document.getElementById('status').textContent.startsWith('signed by dr.rossi')", 120)
            versions = httpx.get(f"http://127.0.0.1:{port}/api/studies/{study_id}/edits", headers={"Authorization": f"Bearer {token}"}).json()
            assert [v["document"]["impression"] for v in versions["items"]][1:] == ["Colleague's impression.", "Mild scoliosis, reviewed in the browser."]
            exported = page.request.get(f"http://127.0.0.1:{port}/api/studies/{study_id}/export?format=json").json()
            assert exported["status"] == "signed"
            assert exported["report"]["sections"]["alignment"]["alignment"] == "scoliosis"
            assert exported["impression"] == "Mild scoliosis, reviewed in the browser."
            markdown = page.request.get(f"http://127.0.0.1:{port}/api/studies/{study_id}/export?format=md").text()
            assert "- **Alignment:** scoliosis" in markdown
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "serve_workstation.png"))
            assert errors == []
            browser.close()
    finally:
        server.kill()
        server.wait(timeout=10)
