"""The playground in a real headless browser (Debian's chromium through chromium-driver and selenium):
train the ring to 8/8 modes on the page, check the drawings, change the objective, export the config
and replay it with `gankit train`. The screenshot is kept in artifacts/playground.png."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.playground.server import Playground

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("GANKIT_ARTIFACTS", ROOT / "artifacts"))
MODES_TIMEOUT = 90  # seconds; about 5 on an idle 2-core machine
SHOT_SECONDS = 15


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:  # scripts/setup.sh installs both: a missing one is a failed setup
        pytest.fail("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    return chromium, driver


@pytest.fixture(scope="module")
def playground():
    p = Playground(port=0, configs_dir=ROOT / "configs").start_in_thread()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # no background networking: the page is on localhost, and CI has no network to reach
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def hq(browser) -> float:
    shown = text(browser, "hq-value").rstrip("%")
    return float(shown) / 100 if shown not in ("", "-") else 0.0


def drawn_colours(browser, element_id: str) -> int:
    """Distinct colours on a canvas (a blank one has 1)."""
    return browser.execute_script("""
        const c = document.getElementById(arguments[0]), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return seen.size;""", element_id)


def fetch_text(browser, link_id: str) -> str:
    """What the page's download link serves, fetched by the page itself (same origin, with the token)."""
    return browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById(arguments[0]).href).then(r => r.text()).then(done);""", link_id)


def test_without_the_token_the_page_is_refused(playground):
    base = playground.url.split("?")[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base, timeout=10)
    assert refused.value.code == 403
    ws = f"ws://127.0.0.1:{playground.port}/ws?token={playground.token}"
    with pytest.raises(InvalidStatus) as refused_ws:
        connect(ws, origin="http://evil.example", open_timeout=10)
    assert refused_ws.value.response.status_code == 403
    with connect(ws, origin=f"http://127.0.0.1:{playground.port}", open_timeout=10) as same_site:
        assert isinstance(same_site.recv(timeout=10), bytes)


def test_train_the_ring_in_the_browser_and_replay_the_export(playground, browser, tmp_path):
    browser.get(playground.url)
    wait = WebDriverWait(browser, 60)  # generous: CI machines may be busy
    wait.until(lambda b: b.find_element(By.ID, "objective.name").get_attribute("value") == "ns")
    assert Select(browser.find_element(By.ID, "data.name")).first_selected_option.get_attribute("value") == "ring"
    browser.find_element(By.ID, "play").click()
    t0 = time.perf_counter()
    WebDriverWait(browser, MODES_TIMEOUT, poll_frequency=0.2).until(lambda b: text(b, "modes-value") == "8/8")
    print(f"\nplayground: 8/8 modes at step {text(browser, 'step-value')} after "
          f"{time.perf_counter() - t0:.1f} s, {text(browser, 'rate-value')} G steps/s")
    # early on, 8/8 can come from samples scattered over the ring; for the screenshot, play on until
    # most samples sit on the modes (or a time cap)
    end = time.perf_counter() + SHOT_SECONDS
    while time.perf_counter() < end and hq(browser) < 0.5:
        time.sleep(0.25)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "playground.png"
    browser.save_screenshot(str(shot))
    shutil.copy(shot, ARTIFACTS / "playground.png")
    print(f"playground: screenshot at step {text(browser, 'step-value')}, modes {text(browser, 'modes-value')}, "
          f"high quality {text(browser, 'hq-value')}: {shot} (kept as {ARTIFACTS / 'playground.png'})")
    assert drawn_colours(browser, "plane") > 50  # heat map shades, both point colours, arrows
    assert drawn_colours(browser, "loss-chart") > 3 and drawn_colours(browser, "d-chart") > 3

    browser.find_element(By.ID, "play").click()  # pause
    wait.until(lambda b: text(b, "play") == "Play")
    Select(browser.find_element(By.ID, "objective.name")).select_by_value("hinge")
    wait.until(lambda b: text(b, "clean-value").startswith("no"))  # continued mid-game: not replayable
    assert playground.session.trainer.objective.cfg.name == "hinge"
    assert "changed while it ran" in fetch_text(browser, "export")

    browser.find_element(By.ID, "reset").click()  # a new game with hinge: the export replays it
    wait.until(lambda b: text(b, "step-value") == "0" and text(b, "clean-value") == "yes")
    for _ in range(5):
        browser.find_element(By.ID, "step").click()
    wait.until(lambda b: text(b, "step-value") == "5")
    exported = fetch_text(browser, "export")
    assert "reproduces the playground's game" in exported and "name: hinge" in exported
    config = tmp_path / "playground.yaml"
    config.write_text(exported)
    ckpt = tmp_path / "played.safetensors"
    href = browser.find_element(By.ID, "checkpoint").get_attribute("href")
    ckpt.write_bytes(urllib.request.urlopen(href, timeout=30).read())
    run = subprocess.run([sys.executable, "-m", "gankit", "train", str(config), "--run-dir", str(tmp_path / "run"),
                          "--set", "log.progress=false", "log.tensorboard=false", "log.plot=false"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    played, _ = load_checkpoint(ckpt)
    trained, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    assert meta["step"] == 5
    for net in ("g", "d"):
        for k in played[net]:
            assert torch.equal(played[net][k], trained[net][k]), f"{net}.{k}"


def test_a_lessons_game_opens_ready_from_its_url(playground, browser):
    """`gankit lesson NAME --play RUN` opens the page with the game's settings in the URL's fragment; the page
    applies them on load, as if set by hand."""
    import json

    from gankit.lessons import playground_fragment

    def state() -> dict:
        request = urllib.request.Request(playground.url.split("?")[0] + "api/state",
                                         headers={"X-Gankit-Token": playground.token})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    browser.get("about:blank")  # the first link loads the page afresh, the second changes only its fragment
    for lesson, run, objective, gamma, k in (("minimax-and-k", "minimax_k4", "minimax", 0.0, 4),
                                             ("mode-collapse-ring", "r1", "ns", 0.1, 1)):
        browser.get(playground.url + "#" + playground_fragment(lesson, run))
        wanted = {"objective.name": objective, "objective.r1_gamma": gamma, "train.d_steps": k, "data.name": "ring"}
        WebDriverWait(browser, 30).until(lambda _: all(state()["values"][key] == v for key, v in wanted.items()))
