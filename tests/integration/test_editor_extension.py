"""Run on RunPod from the ComfyUI editor: a ComfyUI of the user's own (the editor in
headless Chromium, the extension in its custom_nodes) runs workflows on the local
endpoint, whose worker runs them on the shared ComfyUI. Screenshots go to .local/artifacts/."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.comfyui_server import start_comfyui
from tests.support.local_endpoint import API_KEY
from tests.support.workflows import REPO_ROOT, txt2img

ARTIFACTS = REPO_ROOT / ".local" / "artifacts"
KEY_SET = "(kept by ComfyUI's server)"
BUTTON = "[aria-label='Run this workflow on your RunPod endpoint']"
MISSING = "#8a3333"  # the extension's mark on a node the endpoint cannot run


@pytest.fixture(scope="module")
def designer(tmp_path_factory):
    """The user's ComfyUI, with the extension installed and its first-run tutorial done."""
    base = tmp_path_factory.mktemp("designer")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "runpod-run").symlink_to(REPO_ROOT / "editor_extension")
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = start_comfyui(base)
    yield server
    server.stop()


@pytest.fixture
def editor(browser: WebDriver, designer, endpoint, request) -> WebDriver:
    """The editor, loaded, with the endpoint and its key set in the extension's settings."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"http://{designer.host}/")
    WebDriverWait(browser, 120).until(
        lambda b: b.execute_script("return !!(window.app?.graph && window.app?.extensionManager?.setting)")
    )
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, BUTTON))
    set_setting(browser, "RunPod.BaseUrl", endpoint[0])
    set_setting(browser, "RunPod.ApiKey", API_KEY)
    WebDriverWait(browser, 10).until(lambda b: bridge_settings(designer)["has_key"])
    yield browser
    browser.save_screenshot(str(ARTIFACTS / f"editor-{request.node.name}.png"))


def set_setting(browser: WebDriver, setting: str, value: str) -> None:
    browser.execute_script("return window.app.extensionManager.setting.set(arguments[0], arguments[1])", setting, value)


def bridge_settings(designer) -> dict:
    with urllib.request.urlopen(f"http://{designer.host}/runpod/settings") as response:
        return json.load(response)


def load(browser: WebDriver, workflow: dict) -> None:
    browser.execute_script("return window.app.loadApiJson(arguments[0], 'workflow.json')", workflow)


def runs(browser: WebDriver) -> list[dict]:
    return browser.execute_script(
        "return [...document.querySelectorAll('.runpod-run')].map(r => ({id: r.dataset.jobId, state: r.dataset.state, "
        "text: r.innerText, images: r.querySelectorAll('img:not(.runpod-preview)').length, "
        "previews: r.querySelectorAll('img.runpod-preview').length}))"
    )


def test_a_workflow_runs_on_the_endpoint_with_progress_and_its_output_lands_in_output(editor, designer, endpoint):
    assert bridge_settings(designer) == {"endpoint_id": "", "base_url": endpoint[0], "has_key": True}
    assert editor.execute_script("return window.app.extensionManager.setting.get('RunPod.ApiKey')") == KEY_SET
    set_setting(editor, "RunPod.Previews", True)
    load(editor, txt2img(steps=40, size=64, seed=707))
    # The button beside Queue (clicked as a script: a toast may cover it).
    editor.execute_script("arguments[0].click()", editor.find_element(By.CSS_SELECTOR, BUTTON))

    seen, previews, deadline = [], 0, time.monotonic() + 120
    while not (current := runs(editor)) or current[0]["state"] != "COMPLETED":
        assert time.monotonic() < deadline, seen[-3:]
        if current:
            seen.append(current[0]["text"])
            previews = max(previews, current[0]["previews"])
        time.sleep(0.1)

    percents = {int(text.split("%")[0].split()[-1]) for text in seen if "%" in text}
    assert len([p for p in percents if 0 < p < 100]) >= 2, seen
    assert any("KSampler: step" in text for text in seen), seen
    [done] = runs(editor)
    assert done["images"] == 1 and "1 output(s) in output/" in done["text"]
    saved = list((designer.base_dir / "output").glob("*.png"))
    assert len(saved) == 1 and saved[0].stat().st_size > 0
    assert previews == 1, "the latent preview showed while sampling"
    # The output shows in the SaveImage node's preview, as after a local run.
    shown = "return window.app.nodeOutputs?.['9']?.images?.[0]?.filename"
    WebDriverWait(editor, 10).until(lambda b: b.execute_script(shown) == saved[0].name)


def test_several_runs_are_in_flight_each_listed_and_cancelled_from_the_editor(editor):
    load(editor, txt2img(steps=400, seed=708))
    for _ in range(2):
        editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(lambda b: len(runs(b)) == 2 and any("step" in run["text"] for run in runs(b)))
    assert len({run["id"] for run in runs(editor)}) == 2 and all(run["state"] != "FAILED" for run in runs(editor))

    for run in runs(editor):  # each button found afresh: the panel is redrawn every second
        editor.execute_script(
            "document.querySelector(`.runpod-run[data-job-id='${arguments[0]}'] .runpod-cancel`).click()", run["id"]
        )
    WebDriverWait(editor, 30).until(lambda b: [run["state"] for run in runs(b)] == ["CANCELLED", "CANCELLED"])


def test_a_missing_model_and_a_wrong_key_say_what_is_wrong(editor):
    load(editor, txt2img(seed=709, checkpoint="absent-model.safetensors"))
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 60).until(lambda b: runs(b) and runs(b)[0]["state"] == "FAILED")
    assert "absent-model.safetensors" in runs(editor)[0]["text"] and "node 4" in runs(editor)[0]["text"]
    assert editor.execute_script("return window.app.graph.getNodeById(4).bgcolor") == MISSING, "marked on the node"

    set_setting(editor, "RunPod.ApiKey", "wrong-key")
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 30).until(
        lambda b: "refused the API key (HTTP 401)" in b.find_element(By.TAG_NAME, "body").text
    )


def test_check_marks_what_the_endpoint_lacks_before_anything_runs(editor):
    load(editor, txt2img(seed=710, checkpoint="absent-model.safetensors"))
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Check')")

    WebDriverWait(editor, 60).until(lambda b: "is not on the endpoint" in b.find_element(By.TAG_NAME, "body").text)
    assert "checkpoints/absent-model.safetensors" in editor.find_element(By.TAG_NAME, "body").text
    assert editor.execute_script("return window.app.graph.getNodeById(4).bgcolor") == MISSING
    assert runs(editor) == [], "nothing was submitted"
