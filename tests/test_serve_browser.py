"""The page in a real headless Chromium: upload a CADMA image, draft, see boxes, edit, sign, export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_serve_durability import free_port, start_server

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SAMPLE = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]


def test_draft_edit_sign_export_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'radscribe[browser]')")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    port = free_port()
    server = start_server(tmp_path / "data", port, model=None)  # the embedded default model
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
            page.set_input_files("#upload", str(SAMPLE))
            page.wait_for_function("document.getElementById('canvas').dataset.loaded === '1'", timeout=20_000)
            page.keyboard.press("d")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('draft ready')", timeout=60_000)
            drawn = page.evaluate("window.radscribe.S.drawn")
            assert drawn and all(item["rect"][0] >= 0 for item in drawn)
            pixels = page.evaluate("""() => { const c = document.getElementById('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let lit = 0; for (let i = 0; i < d.length; i += 4) lit += d[i] > 0; return lit; }""")
            assert pixels > 1000  # the radiograph is on the canvas

            page.hover("#field-vertebrae\\.count")
            assert page.evaluate("window.radscribe.S.drawn.filter(b => b.highlighted).length") == len(drawn)

            page.select_option("#input-alignment\\.alignment", "scoliosis")
            page.fill("#impression", "Mild scoliosis, reviewed in the browser.")
            page.click("#canvas")  # leave the text box so shortcuts apply
            page.keyboard.press("Control+Enter")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('signed by')", timeout=20_000)
            study_id = page.evaluate("window.radscribe.S.study.id")
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
