"""Run on RunPod from the ComfyUI editor: a ComfyUI of the user's own (the editor in
headless Chromium, the extension in its custom_nodes) runs workflows on the local
endpoint, whose worker runs them on the shared ComfyUI. Screenshots go to .local/artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.comfyui_server import start_comfyui
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.tools import GIT_IDENTITY
from tests.support.workflows import REPO_ROOT, txt2img

ARTIFACTS = REPO_ROOT / ".local" / "artifacts"
KEY_KEPT = "kept: type a new key to replace it"
BUTTON = "[aria-label='Run this workflow on your RunPod endpoint']"
MISSING = "#8a3333"  # the extension's mark on a node the endpoint cannot run
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


@pytest.fixture(scope="module")
def designer(tmp_path_factory):
    """The user's ComfyUI, with the extension installed as ComfyUI-Manager installs it and
    its first-run tutorial done."""
    base = tmp_path_factory.mktemp("designer")
    (base / "custom_nodes").mkdir()
    install_by_git_url(tmp_path_factory.mktemp("published") / "comfyui-worker", base / "custom_nodes")
    (base / "custom_nodes" / "designer_only_nodes").mkdir()
    (base / "custom_nodes" / "designer_only_nodes" / "__init__.py").write_text(DESIGNER_ONLY_NODE)
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = start_comfyui(base)
    yield server
    server.stop()


DESIGNER_ONLY_NODE = """
class DesignerOnlyInvert:  # a node pack the user has and the endpoint lacks
    CATEGORY, RETURN_TYPES, FUNCTION = "tests", ("IMAGE",), "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image):
        return (1.0 - image,)


NODE_CLASS_MAPPINGS = {"DesignerOnlyInvert": DesignerOnlyInvert}
"""


def install_by_git_url(repository: Path, custom_nodes: Path) -> None:
    """What ComfyUI-Manager's "Install via Git URL" does with `<repository>@editor-extension`
    (a clone into custom_nodes/, then a checkout of what follows the @), from a repository
    whose editor_extension/ is this working tree's and whose branch the publishing script made."""
    environment = {**os.environ, **GIT_IDENTITY}
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("editor_extension", "comfy_worker_client"):
        shutil.copytree(REPO_ROOT / folder, repository / folder, ignore=ignore)
    target = custom_nodes / repository.name
    for command in (
        ["git", "init", "-q", "-b", "main", str(repository)],
        ["git", "-C", str(repository), "add", "-A"],
        ["git", "-C", str(repository), "commit", "-q", "-m", "worker"],
        ["bash", str(REPO_ROOT / "scripts" / "publish_editor_extension.sh")],
        ["git", "clone", "-q", str(repository), str(target)],
        ["git", "-C", str(target), "checkout", "-q", "editor-extension"],
    ):
        subprocess.run(command, cwd=repository, env=environment, check=True, capture_output=True)
    assert (target / "__init__.py").is_file()
    assert not (target / "editor_extension").exists()
    assert (target / "comfy_worker_client" / "endpoint.py").is_file(), "the client travels with the extension"


@pytest.fixture(scope="module")
def small_results_endpoint(comfyui, tmp_path_factory):
    """A local endpoint whose worker returns at most 2 kB inline and has no bucket."""
    log_file = tmp_path_factory.mktemp("small-results") / "endpoint.log"
    with running_endpoint({**comfyui.env(), "MAX_RESPONSE_BYTES": "2000"}, log_file) as base_url:
        yield base_url


@pytest.fixture
def editor(browser: WebDriver, designer, endpoint, request) -> WebDriver:
    """The editor, loaded, with the endpoint and its key set in the extension's settings."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"http://{designer.host}/")
    WebDriverWait(browser, 120).until(
        lambda b: b.execute_script("return !!(window.app?.graph && window.app?.extensionManager?.setting)")
    )
    WebDriverWait(browser, 90).until(lambda b: b.find_elements(By.CSS_SELECTOR, BUTTON))
    configure(designer, base_url=endpoint[0], api_key=API_KEY)
    set_setting(browser, "RunPod.ExecutionTimeout", 0)
    yield browser
    browser.save_screenshot(str(ARTIFACTS / f"editor-{request.node.name}.png"))


def set_setting(browser: WebDriver, setting: str, value: str) -> None:
    browser.execute_script("return window.app.extensionManager.setting.set(arguments[0], arguments[1])", setting, value)


def bridge_settings(designer) -> dict:
    with urllib.request.urlopen(f"http://{designer.host}/runpod/settings") as response:
        return json.load(response)


def configure(designer, **settings: str) -> dict:
    """What the settings fields send the bridge (test_typing_the_settings types them)."""
    request = urllib.request.Request(
        f"http://{designer.host}/runpod/settings", json.dumps(settings).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def load(browser: WebDriver, workflow: dict) -> None:
    browser.execute_script("return window.app.loadApiJson(arguments[0], 'workflow.json')", workflow)


def runs(browser: WebDriver) -> list[dict]:
    return browser.execute_script(
        "return [...document.querySelectorAll('.runpod-run')].map(r => ({id: r.dataset.jobId, state: r.dataset.state, "
        "text: r.innerText, images: r.querySelectorAll('img:not(.runpod-preview)').length, "
        "previews: r.querySelectorAll('img.runpod-preview').length}))"
    )


def from_the_menu(editor: WebDriver, command: str) -> None:
    """As a person does it: a click on ComfyUI's menu (its logo), the arrow keys down to the
    RunPod entry and into it (a click on an entry of this headless menu opens and closes it
    at once, and the pointer's path opens whatever it crosses), then a click on the command."""
    editor.find_element(By.CSS_SELECTOR, ".comfy-menu-button-wrapper").click()
    # The menu takes the keyboard once it has opened (after its animation, later on a busy machine).
    has_keyboard = "return document.activeElement?.matches('.comfy-command-menu .p-tieredmenu-root-list')"
    WebDriverWait(editor, 30).until(lambda b: b.execute_script(has_keyboard))
    item = ".comfy-command-menu li[aria-label='RunPod']"
    root = ".comfy-command-menu .p-tieredmenu-root-list"
    for _ in range(20):  # the entries above RunPod, with room to spare
        if editor.find_element(By.CSS_SELECTOR, item).get_attribute("data-p-focused") == "true":
            break
        focused = editor.find_element(By.CSS_SELECTOR, root).get_attribute("aria-activedescendant")
        ActionChains(editor).send_keys(Keys.ARROW_DOWN).perform()
        WebDriverWait(editor, 30).until(
            lambda b, before=focused: (
                b.find_element(By.CSS_SELECTOR, root).get_attribute("aria-activedescendant") != before
            )
        )
    assert editor.find_element(By.CSS_SELECTOR, item).get_attribute("data-p-focused") == "true", "RunPod reached"
    ActionChains(editor).send_keys(Keys.ARROW_RIGHT).perform()
    entry = f"//*[contains(@class, 'comfy-command-menu')]//*[normalize-space(text()) = '{command}']"
    WebDriverWait(editor, 30).until(lambda b: b.find_element(By.XPATH, entry)).click()


def run_and_wait(editor: WebDriver, final: str, timeout_s: float = 90) -> dict:
    """Runs the open workflow on RunPod; its entry in the panel once it is `final`."""
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, timeout_s).until(lambda b: runs(b) and runs(b)[0]["state"] in FINAL)
    [run] = runs(editor)
    assert run["state"] == final, run
    return run


def test_a_workflow_runs_on_the_endpoint_with_progress_and_its_output_lands_in_output(editor, designer, endpoint):
    assert bridge_settings(designer) == {"endpoint_id": "", "base_url": endpoint[0], "has_key": True}
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
    assert done["images"] == 1
    assert "1 output(s) in output/" in done["text"]
    saved = list((designer.base_dir / "output").glob("*.png"))
    assert len(saved) == 1
    assert saved[0].stat().st_size > 0
    assert previews == 1, "the latent preview showed while sampling"
    # The output shows in the SaveImage node's preview, as after a local run.
    shown = "return window.app.nodeOutputs?.['9']?.images?.[0]?.filename"
    WebDriverWait(editor, 90).until(lambda b: b.execute_script(shown) == saved[0].name)
    # The image carries the editor's graph (dropped onto the editor, it opens the workflow)...
    assert json.loads(Image.open(saved[0]).info["workflow"])["nodes"], "the UI workflow in the PNG"
    # ...and the run is in ComfyUI's queue history: the editor's Queue panel shows its output.
    with urllib.request.urlopen(f"http://{designer.host}/history/{done['id']}") as response:
        [entry] = json.load(response).values()
    assert entry["outputs"]["9"]["images"][0]["filename"] == saved[0].name
    assert entry["status"]["completed"]
    open_outputs_panel(editor)
    in_panel = "return [...document.querySelectorAll('.side-bar-panel img')].map(i => i.src).join(' ')"
    WebDriverWait(editor, 90).until(lambda b: saved[0].name in b.execute_script(in_panel))
    editor.save_screenshot(str(ARTIFACTS / "editor-queue-panel.png"))


def test_several_runs_are_in_flight_each_listed_and_cancelled_from_the_editor(editor):
    load(editor, txt2img(steps=400, seed=708))
    for _ in range(2):
        editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(lambda b: len(runs(b)) == 2 and any("step" in run["text"] for run in runs(b)))
    assert len({run["id"] for run in runs(editor)}) == 2
    assert all(run["state"] != "FAILED" for run in runs(editor))

    for run in runs(editor):  # each button found afresh: the panel is redrawn every second
        editor.execute_script(
            "document.querySelector(`.runpod-run[data-job-id='${arguments[0]}'] .runpod-cancel`).click()", run["id"]
        )
    WebDriverWait(editor, 90).until(lambda b: [run["state"] for run in runs(b)] == ["CANCELLED", "CANCELLED"])


def test_a_missing_model_and_a_wrong_key_say_what_is_wrong(editor, designer):
    load(editor, txt2img(seed=709, checkpoint="absent-model.safetensors"))
    failed = run_and_wait(editor, "FAILED")
    assert "absent-model.safetensors" in failed["text"], failed
    assert "node 4" in failed["text"], failed
    assert editor.execute_script("return window.app.graph.getNodeById(4).bgcolor") == MISSING, "marked on the node"

    configure(designer, api_key="wrong-key")
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(
        lambda b: "refused the API key (HTTP 401)" in b.find_element(By.TAG_NAME, "body").text
    )


def test_a_node_type_the_endpoint_lacks_is_named_with_its_package(editor):
    workflow = txt2img(steps=1, size=64, seed=715)
    workflow["20"] = {"class_type": "DesignerOnlyInvert", "inputs": {"image": ["8", 0]}}
    workflow["9"]["inputs"]["images"] = ["20", 0]
    load(editor, workflow)
    # The package, as a workflow saved by an editor with the pack installed records it.
    editor.execute_script("window.app.graph.getNodeById(20).properties.cnr_id = 'designer-only-nodes'")

    from_the_menu(editor, "Check against the RunPod endpoint")
    # The worker's own words, from the validate-only job: the node, its type, the package to add.
    expected = "node 20 has type 'DesignerOnlyInvert', which this ComfyUI does not have"
    WebDriverWait(editor, 60).until(lambda b: expected in b.find_element(By.TAG_NAME, "body").text)
    assert "custom-node package 'designer-only-nodes'" in editor.find_element(By.TAG_NAME, "body").text
    assert runs(editor) == [], "the check ran nothing"
    assert editor.execute_script("return window.app.graph.getNodeById(20).bgcolor") == MISSING

    failed = run_and_wait(editor, "FAILED")
    assert "node 20" in failed["text"], failed
    assert "'DesignerOnlyInvert'" in failed["text"], failed
    assert "custom-node package 'designer-only-nodes'" in failed["text"], failed
    assert editor.execute_script("return window.app.graph.getNodeById(20).bgcolor") == MISSING, "marked on the node"


def test_an_unreachable_endpoint_says_so_before_anything_runs(editor, designer):
    configure(designer, base_url="http://127.0.0.1:9/v2/nowhere", api_key=API_KEY)
    load(editor, txt2img(steps=1, size=64, seed=716))
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(lambda b: "is unreachable" in b.find_element(By.TAG_NAME, "body").text)
    assert "check its ID or base URL" in editor.find_element(By.TAG_NAME, "body").text
    assert runs(editor) == []


def test_check_marks_what_the_endpoint_lacks_before_anything_runs(editor):
    load(editor, txt2img(seed=710, checkpoint="absent-model.safetensors"))
    from_the_menu(editor, "Check against the RunPod endpoint")

    WebDriverWait(editor, 60).until(lambda b: "cannot run this workflow" in b.find_element(By.TAG_NAME, "body").text)
    assert "'absent-model.safetensors' is not installed" in editor.find_element(By.TAG_NAME, "body").text
    assert editor.execute_script("return window.app.graph.getNodeById(4).bgcolor") == MISSING
    assert runs(editor) == [], "nothing was submitted"


def test_a_timeout_and_an_output_too_large_say_what_to_do(editor, designer, small_results_endpoint, comfyui):
    set_setting(editor, "RunPod.ExecutionTimeout", 2)
    load(editor, txt2img(steps=400, seed=711))
    timed_out = run_and_wait(editor, "TIMED_OUT")
    assert "What to do: raise the execution timeout (Settings > RunPod" in timed_out["text"], timed_out
    WebDriverWait(editor, 90).until(lambda _: comfyui.queue() == {"queue_running": [], "queue_pending": []})

    editor.execute_script("window.app.graph.clear()")  # the next run is the panel's only entry
    editor.refresh()
    WebDriverWait(editor, 120).until(lambda b: b.execute_script("return !!window.app?.extensionManager?.setting"))
    set_setting(editor, "RunPod.ExecutionTimeout", 0)
    configure(designer, base_url=small_results_endpoint, api_key=API_KEY)
    load(editor, txt2img(steps=2, size=64, seed=712))
    too_large = run_and_wait(editor, "FAILED")
    assert "MAX_RESPONSE_BYTES" in too_large["text"], too_large
    assert "Environment Variables" in too_large["text"], too_large


def test_nodes_without_an_api_form_are_named_and_marked(editor):
    load(editor, txt2img(steps=2, size=64, seed=713))
    editor.execute_script(
        "const graph = window.app.graph.serialize();"
        "graph.nodes.push({id: 77, type: 'NotInstalledHere', pos: [40, 40], size: [200, 80], flags: {}, order: 9,"
        " mode: 0, inputs: [], outputs: [], properties: {}, widgets_values: []});"
        "graph.last_node_id = 77;"
        "return window.app.loadGraphData(graph);"
    )
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(lambda b: "has no API form" in b.find_element(By.TAG_NAME, "body").text)
    assert "node 77" in editor.find_element(By.TAG_NAME, "body").text
    assert editor.execute_script("return window.app.graph.getNodeById(77).bgcolor") == MISSING
    assert runs(editor) == [], "nothing was submitted"

    editor.execute_script(
        "return window.app.loadGraphData({last_node_id: 1, last_link_id: 0, links: [], groups: [], version: 0.4,"
        " nodes: [{id: 1, type: 'Note', pos: [0, 0], size: [200, 80], flags: {}, order: 0, mode: 0,"
        " properties: {}, widgets_values: ['only a note']}]})"
    )
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(lambda b: "has nothing to run" in b.find_element(By.TAG_NAME, "body").text)
    assert runs(editor) == []


def test_outputs_an_endpoint_puts_in_its_bucket_are_downloaded_into_output(editor, designer, bucket_endpoint):
    base_url, env = bucket_endpoint
    bucket = boto3.resource(
        "s3", endpoint_url=env["BUCKET_ENDPOINT_URL"], aws_access_key_id="k", aws_secret_access_key="s",
        region_name="us-east-1",
    ).Bucket(env["BUCKET_NAME"])  # fmt: skip
    in_bucket = {item.key for item in bucket.objects.all()}
    configure(designer, base_url=base_url, api_key=API_KEY)
    before = set((designer.base_dir / "output").glob("*.png"))
    load(editor, txt2img(steps=2, size=64, seed=714))
    done = run_and_wait(editor, "COMPLETED")
    [saved] = set((designer.base_dir / "output").glob("*.png")) - before
    added = {item.key for item in bucket.objects.all()} - in_bucket
    [record] = [key for key in added if key.startswith("submits/")]  # the bridge's submit is kept by its key
    [uploaded] = added - {record}  # the output went by URL
    assert done["images"] == 1, done
    assert saved.read_bytes() == bucket.Object(uploaded).get()["Body"].read(), done


def open_outputs_panel(editor: WebDriver) -> None:
    """ComfyUI's side panel of past runs and their outputs: the Queue tab, or the Assets tab
    that replaced it in newer frontends."""
    editor.execute_script(
        "const commands = window.app.extensionManager.command;"
        "const ids = commands.commands.map(command => command.id);"
        "const tab = ['Workspace.ToggleSidebarTab.queue', 'Workspace.ToggleSidebarTab.assets']"
        "  .find(id => ids.includes(id));"
        "return commands.execute(tab);"
    )


def open_runpod_settings(editor: WebDriver) -> None:
    editor.execute_script("return window.app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    # The settings' category list: a list box, or (newer frontends) a navigation of buttons.
    category = (
        "//li[contains(@class, 'p-listbox-option') and normalize-space() = 'RunPod']"
        " | //*[@role = 'button' and @data-nav-id = 'root/RunPod']"
    )
    WebDriverWait(editor, 90).until(lambda b: b.find_elements(By.XPATH, category))
    editor.find_element(By.XPATH, category).click()
    WebDriverWait(editor, 90).until(lambda b: b.find_elements(By.ID, "runpod-setting-api_key"))


def error_toasts(editor: WebDriver) -> list[str]:
    return editor.execute_script(
        "return [...document.querySelectorAll('.p-toast-message-error')].map(t => t.innerText)"
    )


def test_typing_the_settings_saves_each_once_and_keeps_the_key_as_typed(editor, designer, endpoint):
    """14, 15: a person types the base URL and the key key by key: nothing is saved or checked
    per keystroke, the field is never rewritten while typed in, and the key is kept exactly."""
    configure(designer, base_url=endpoint[0], api_key="")  # no key kept for it yet
    configure(designer, base_url="", endpoint_id="")
    editor.refresh()
    WebDriverWait(editor, 120).until(lambda b: b.execute_script("return !!window.app?.extensionManager?.setting"))
    open_runpod_settings(editor)
    base_url = editor.find_element(By.ID, "runpod-setting-base_url")
    assert base_url.get_attribute("value") == ""
    base_url.click()
    for character in endpoint[0]:
        base_url.send_keys(character)
        assert error_toasts(editor) == [], "nothing is checked while typing"
    assert bridge_settings(designer)["base_url"] == "", "nor saved"

    key = editor.find_element(By.ID, "runpod-setting-api_key")
    assert key.get_attribute("type") == "password"
    key.click()  # leaving the base URL's field saves it, once
    WebDriverWait(editor, 90).until(lambda _: bridge_settings(designer)["base_url"] == endpoint[0])
    for character in API_KEY:
        key.send_keys(character)
        assert key.get_attribute("value") == API_KEY[: len(key.get_attribute("value"))], "never rewritten"
    assert key.get_attribute("value") == API_KEY
    key.send_keys(Keys.ENTER)

    WebDriverWait(editor, 90).until(lambda _: bridge_settings(designer)["has_key"])
    stored = json.loads((designer.base_dir / "user" / "runpod_run.json").read_text())
    assert stored["keys"][endpoint[0]] == API_KEY, "the key exactly as typed, for this endpoint"
    WebDriverWait(editor, 90).until(lambda _: key.get_attribute("placeholder") == KEY_KEPT)
    assert key.get_attribute("value") == ""
    assert error_toasts(editor) == []
    editor.save_screenshot(str(ARTIFACTS / "editor-settings-typed.png"))

    editor.refresh()  # what a person sees next time: the URL, and a key kept but not shown
    WebDriverWait(editor, 120).until(lambda b: b.execute_script("return !!window.app?.extensionManager?.setting"))
    open_runpod_settings(editor)
    WebDriverWait(editor, 90).until(
        lambda b: b.find_element(By.ID, "runpod-setting-base_url").get_attribute("value") == endpoint[0]
    )
    assert editor.find_element(By.ID, "runpod-setting-api_key").get_attribute("placeholder") == KEY_KEPT
    assert API_KEY not in editor.page_source
    editor.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    load(editor, txt2img(steps=1, size=64, seed=717))
    run_and_wait(editor, "COMPLETED")  # the typed key works


def test_a_base_url_typed_wrong_is_refused_once_when_left(editor, designer):
    open_runpod_settings(editor)
    base_url = editor.find_element(By.ID, "runpod-setting-base_url")
    base_url.click()
    base_url.send_keys(Keys.CONTROL, "a")
    for character in "ftp://example.com":
        base_url.send_keys(character)
    assert error_toasts(editor) == []
    base_url.send_keys(Keys.TAB)
    WebDriverWait(editor, 90).until(lambda b: len(error_toasts(b)) == 1)
    assert "must start with http:// or https://" in error_toasts(editor)[0]
    assert base_url.get_attribute("value") == "ftp://example.com", "what was typed stays, to be corrected"


def test_a_randomized_seed_changes_between_runs_as_with_run(editor, designer):
    """17: "control after generate: randomize" gives each run a new seed, as ComfyUI's Run does."""
    load(editor, txt2img(steps=1, size=64, seed=718))
    control = "return window.app.graph.getNodeById(3).widgets.find(w => w.name === 'control_after_generate')"
    editor.execute_script(control + ".value = 'randomize'")
    seed = "return window.app.graph.getNodeById(3).widgets.find(w => w.name === 'seed').value"
    sent = []
    for _ in range(2):
        before = editor.execute_script(seed)
        done = run_and_wait(editor, "COMPLETED")
        with urllib.request.urlopen(f"http://{designer.host}/history/{done['id']}") as response:
            [entry] = json.load(response).values()
        sent.append(entry["prompt"][2]["3"]["inputs"]["seed"])
        assert sent[-1] == before, "the run sends the seed the widget showed"
        assert editor.execute_script(seed) != before, "then the widget gets a new one"
        editor.execute_script("document.querySelector('.runpod-panel-button').click()")  # Clear finished
    assert sent[0] != sent[1]


def in_history(designer, job_id: str) -> bool:
    with urllib.request.urlopen(f"http://{designer.host}/history/{job_id}") as response:
        return bool(json.load(response))


def test_the_runs_panel_leaves_comfyuis_controls_free_and_can_be_cleared_and_closed(editor, designer):
    """24: the panel covered the minimap and the zoom bar, could not be closed or cleared, and its
    entries said neither which job nor when."""
    load(editor, txt2img(steps=1, size=64, seed=719))
    done = run_and_wait(editor, "COMPLETED")
    rect = "return JSON.stringify(document.querySelector(arguments[0])?.getBoundingClientRect() ?? null)"
    panel = json.loads(editor.execute_script(rect, "#runpod-runs"))
    for control in (".minimap-main-container", BUTTON):
        other = json.loads(editor.execute_script(rect, control))
        if other is not None and other["width"]:
            apart = panel["right"] <= other["left"] or other["right"] <= panel["left"] or \
                panel["bottom"] <= other["top"] or other["bottom"] <= panel["top"]  # fmt: skip
            assert apart, (control, panel, other)
    assert done["id"][:13] in done["text"], "the job id and the time"
    assert ":" in done["text"], "the job id and the time"
    assert "output/" in done["text"], "the saved file's name"
    editor.save_screenshot(str(ARTIFACTS / "editor-runs-panel.png"))

    editor.execute_script("document.querySelector('.runpod-panel-button').click()")  # Clear finished
    assert runs(editor) == []
    assert not editor.find_elements(By.ID, "runpod-runs")
    load(editor, txt2img(steps=40, size=64, seed=720))  # still running when the panel is closed
    editor.execute_script("return window.app.extensionManager.command.execute('RunPod.Run')")
    WebDriverWait(editor, 90).until(lambda b: runs(b) and runs(b)[0]["state"] not in FINAL)
    [running] = runs(editor)
    editor.execute_script("[...document.querySelectorAll('.runpod-panel-button')].pop().click()")  # ×
    # The page's poll that sees the run end also adds it to ComfyUI's history: once it is
    # there, the panel has been redrawn after the close, and must have stayed closed.
    WebDriverWait(editor, 120).until(lambda _: in_history(designer, running["id"]))
    assert not editor.find_elements(By.ID, "runpod-runs")
