"""The jobs page in a real headless Chromium (Debian's chromium and chromedriver,
driven by Selenium) against the local endpoint, a worker and a real ComfyUI:
a job submitted by a click completes and its image shows, the bar moves, cancel
works, a failing workflow shows its error. Screenshots go to .local/artifacts/."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.request

import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from comfy_worker_client import EndpointClient
from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from tests.support.local_endpoint import API_KEY
from tests.support.workflows import REPO_ROOT, empty_image, large_png, scaled_image, txt2img

ARTIFACTS = REPO_ROOT / ".local" / "artifacts"


def loaded(browser: WebDriver, base_url: str) -> WebDriver:
    """The endpoint's page, loaded fresh, with its API key typed in."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(base_url.split("/v2/")[0] + "/")
    WebDriverWait(browser, 90).until(lambda b: b.execute_script("return document.body.dataset.ready") == "true")
    browser.find_element(By.ID, "api-key").send_keys(API_KEY)
    return browser


@pytest.fixture
def page(browser: WebDriver, endpoint, request) -> WebDriver:
    """The plain endpoint's page; screenshot after the test."""
    yield loaded(browser, endpoint[0])
    browser.save_screenshot(str(ARTIFACTS / f"page-{request.node.name}.png"))


@pytest.fixture
def bucket_page(browser: WebDriver, bucket_endpoint, request) -> WebDriver:
    """The page of the endpoint with a bucket; screenshot after the test."""
    yield loaded(browser, bucket_endpoint[0])
    browser.save_screenshot(str(ARTIFACTS / f"page-{request.node.name}.png"))


def state(page: WebDriver) -> str:
    return page.find_element(By.ID, "job-state").text


def paste(page: WebDriver, text: str) -> None:
    page.execute_script("document.getElementById('workflow-text').value = arguments[0]", text)


def drop(page: WebDriver, text: str) -> None:
    """A file dropped on the drop zone, as a browser delivers it."""
    page.execute_script(
        """const transfer = new DataTransfer();
        transfer.items.add(new File([arguments[0]], "workflow.json", {type: "application/json"}));
        const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
        document.getElementById("drop-zone").dispatchEvent(drop);""",
        text,
    )


def test_a_dropped_workflow_runs_the_bar_moves_and_the_image_shows(page):
    (ARTIFACTS / "page-while-sampling.png").unlink(missing_ok=True)
    drop(page, json.dumps(txt2img(steps=40, size=64, seed=41)))
    WebDriverWait(page, 5).until(lambda p: p.find_element(By.ID, "workflow-text").get_property("value"))
    page.find_element(By.ID, "want-preview").click()
    page.find_element(By.ID, "submit").click()

    bar_values, texts, preview_shown = set(), set(), False
    deadline = time.monotonic() + 120
    while (now := state(page)) != "COMPLETED":
        assert time.monotonic() < deadline, now
        assert now in {"", "IN_QUEUE", "IN_PROGRESS"}, now
        bar_values.add(value := float(page.find_element(By.ID, "progress-bar").get_property("value")))
        if 0.63 < value < 0.7 and not (ARTIFACTS / "page-while-sampling.png").exists():
            page.save_screenshot(str(ARTIFACTS / "page-while-sampling.png"))
        texts.add(page.find_element(By.ID, "progress-text").text)
        preview_shown = preview_shown or page.find_element(By.ID, "preview").is_displayed()
        time.sleep(0.05)

    assert len([v for v in bar_values if 0 < v < 1]) >= 2, f"the bar moved through the job: {sorted(bar_values)}"
    assert any("KSampler: step" in text and "s left" in text for text in texts), texts
    assert preview_shown, "a preview while sampling only"
    assert not page.find_element(By.ID, "preview").is_displayed(), "a preview while sampling only"
    image = page.find_element(By.CSS_SELECTOR, "#outputs img")
    WebDriverWait(page, 90).until(lambda p: p.execute_script("return arguments[0].naturalWidth", image) == 64)
    job_id = page.find_element(By.ID, "job-id").text
    recent = page.find_element(By.CSS_SELECTOR, f"#recent-jobs li[data-job-id='{job_id}']")
    assert "COMPLETED" in recent.text


def test_cancel_stops_the_running_job(page, comfyui):
    paste(page, json.dumps({"input": {"workflow": txt2img(steps=400, seed=42)}}))  # a whole job file
    page.find_element(By.ID, "submit").click()
    WebDriverWait(page, 60).until(lambda p: "step" in p.find_element(By.ID, "progress-text").text)

    page.find_element(By.ID, "cancel").click()

    WebDriverWait(page, 90).until(lambda p: state(p) == "CANCELLED")
    assert not page.find_element(By.ID, "cancel").is_displayed()
    with urllib.request.urlopen(f"http://{comfyui.host}/queue") as response:
        deadline = time.monotonic() + 10
        while json.load(response)["queue_running"] and time.monotonic() < deadline:
            time.sleep(0.1)
            response = urllib.request.urlopen(f"http://{comfyui.host}/queue")
    with urllib.request.urlopen(f"http://{comfyui.host}/queue") as response:
        assert json.load(response)["queue_running"] == [], "ComfyUI stopped the prompt"


def test_a_failing_workflow_shows_its_error_with_the_node(page, tmp_path):
    paste(page, "{not json")
    page.find_element(By.ID, "submit").click()
    assert "not valid JSON" in page.find_element(By.ID, "submit-error").text

    workflow = empty_image()
    workflow["3"] = {"class_type": "NoSuchNode", "inputs": {}, "_meta": {"title": "Mystery"}}
    chosen = tmp_path / "broken.json"
    chosen.write_text(json.dumps(workflow))
    page.find_element(By.ID, "workflow-file").send_keys(str(chosen))  # chosen with the file picker
    WebDriverWait(page, 5).until(lambda p: "NoSuchNode" in p.find_element(By.ID, "workflow-text").get_property("value"))
    page.find_element(By.ID, "submit").click()

    WebDriverWait(page, 60).until(lambda p: state(p) == "FAILED")
    message = page.find_element(By.ID, "job-error-message").text
    assert "FAILED" in message
    assert "NoSuchNode" in message
    assert "3" in message
    page.find_element(By.CSS_SELECTOR, "#job-error summary").click()
    assert "invalid_input" in page.find_element(By.ID, "job-error-details").text


def big_input(tmp_path) -> str:
    big = tmp_path / "big.png"
    big.write_bytes(large_png((0x44, 0x55, 0x66)))
    return str(big)


def test_an_input_over_runpods_limit_is_refused_without_a_bucket(page, tmp_path):
    paste(page, json.dumps(scaled_image("big.png", size=24)))
    page.find_element(By.ID, "input-files").send_keys(big_input(tmp_path))
    page.find_element(By.ID, "submit").click()

    WebDriverWait(page, 90).until(lambda p: p.find_element(By.ID, "submit-error").is_displayed())
    refusal = page.find_element(By.ID, "submit-error").text
    assert "Not sent: the request is" in refusal
    assert "over RunPod's limit of 10.0 MB for /run" in refusal
    assert "BUCKET_ENDPOINT_URL" in refusal
    assert not page.find_element(By.ID, "job-panel").is_displayed()


def test_an_input_over_runpods_limit_goes_through_the_bucket(bucket_page, tmp_path):
    paste(bucket_page, json.dumps(scaled_image("big.png", size=24)))
    bucket_page.find_element(By.ID, "input-files").send_keys(big_input(tmp_path))
    bucket_page.find_element(By.ID, "submit").click()

    WebDriverWait(bucket_page, 120).until(lambda p: state(p) == "COMPLETED")
    note = bucket_page.find_element(By.ID, "submit-note").text
    assert "big.png (" in note
    assert "went through bucket uploads" in note
    assert "over RunPod's limit" in note
    image = bucket_page.find_element(By.CSS_SELECTOR, "#outputs img")
    WebDriverWait(bucket_page, 90).until(lambda p: p.execute_script("return arguments[0].naturalWidth", image) == 24)


def choose_txt2img(page: WebDriver) -> None:
    page.find_element(By.ID, "load-workflows").click()
    WebDriverWait(page, 60).until(lambda p: p.execute_script("return document.body.dataset.workflows"))
    Select(page.find_element(By.ID, "workflow-choice")).select_by_value("txt2img")


def set_value(page: WebDriver, css: str, value: str) -> None:
    field = page.find_element(By.CSS_SELECTOR, css)
    field.clear()
    field.send_keys(value)


def test_a_named_workflows_form_has_every_parameter_with_its_bounds(page, endpoint):
    client = EndpointClient(endpoint[0], API_KEY)
    listed = client.wait(client.run({"list": "workflows"}))["output"]["workflows"]
    schema = next(workflow for workflow in listed if workflow["name"] == "txt2img")["parameters"]

    choose_txt2img(page)

    assert not page.find_element(By.ID, "raw-workflow").is_displayed()
    for name, spec in schema["properties"].items():
        field = page.find_element(By.CSS_SELECTOR, f"#params-form [data-param='{name}']")
        if "minimum" in spec:
            number = field.find_element(By.CSS_SELECTOR, "input[type=number]")
            # As JavaScript holds them: the seed's 2^64-1 is a float there.
            assert float(number.get_attribute("min")) == float(spec["minimum"]), name
            assert float(number.get_attribute("max")) == float(spec["maximum"]), name
            if "default" in spec:
                assert float(number.get_attribute("value")) == spec["default"], name
        elif "enum" in spec:
            options = [o.get_attribute("value") for o in field.find_elements(By.CSS_SELECTOR, "option")]
            assert options == spec["enum"], name
        elif "x-installed" in spec:
            options = [o.get_attribute("value") for o in field.find_elements(By.CSS_SELECTOR, "option")]
            assert options[:-1] == spec["x-installed"], name
            assert CHECKPOINT_NAME in options, name
        else:
            assert field.find_element(By.CSS_SELECTOR, "textarea"), name
    assert page.find_element(By.CSS_SELECTOR, "[data-param='seed'] input[type=checkbox]"), "a random seed box"
    assert page.find_element(By.CSS_SELECTOR, "[data-param='steps'] input[type=range]"), "a slider within the bounds"

    set_value(page, "#param-steps", "1000")
    page.find_element(By.ID, "submit").click()
    refusal = page.find_element(By.ID, "submit-error").text
    assert "Not sent: steps: must be at most 100" in refusal
    assert not page.find_element(By.ID, "job-panel").is_displayed()


def test_a_run_from_the_form_uses_its_values_and_the_form_remembers_them(page, endpoint):
    choose_txt2img(page)
    prompt = "a lighthouse at dusk, form test 7"
    set_value(page, "#param-prompt", prompt)
    for name, value in {"steps": "3", "width": "64", "height": "64", "seed": "4242", "cfg": "6.5"}.items():
        set_value(page, f"#param-{name}", value)
    Select(page.find_element(By.ID, "param-checkpoint")).select_by_value(CHECKPOINT_NAME)
    page.save_screenshot(str(ARTIFACTS / "page-form.png"))
    page.find_element(By.ID, "submit").click()

    WebDriverWait(page, 120).until(lambda p: state(p) == "COMPLETED")
    source = page.find_element(By.CSS_SELECTOR, "#outputs img").get_attribute("src")
    png = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    graph = json.loads(png.info["prompt"])  # ComfyUI embeds the prompt it ran
    assert graph["6"]["inputs"]["text"] == prompt
    assert (graph["3"]["inputs"]["seed"], graph["3"]["inputs"]["steps"], graph["3"]["inputs"]["cfg"]) == (4242, 3, 6.5)
    assert png.size == (64, 64)

    page.refresh()
    WebDriverWait(page, 90).until(lambda b: b.execute_script("return document.body.dataset.ready") == "true")
    page.find_element(By.ID, "api-key").send_keys(API_KEY)
    choose_txt2img(page)
    assert page.find_element(By.ID, "param-prompt").get_property("value") == prompt, "remembered in the page"
    assert page.find_element(By.ID, "param-steps").get_property("value") == "3"


def in_view(page: WebDriver, element_id: str) -> bool:
    return page.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.top < window.innerHeight;",
        element_id,
    )


def test_18_the_refusal_and_the_job_come_into_view_each_output_downloads_and_a_reload_keeps_the_list(page):
    page.set_window_size(1280, 700)  # a laptop's screen: the form is longer than it
    try:
        choose_txt2img(page)
        set_value(page, "#param-steps", "1000")
        page.find_element(By.ID, "submit").click()
        WebDriverWait(page, 90).until(lambda p: p.find_element(By.ID, "submit-error").is_displayed())
        assert in_view(page, "submit-error"), "the refusal is brought into view"

        set_value(page, "#param-steps", "2")
        for name, value in {"width": "64", "height": "64"}.items():
            set_value(page, f"#param-{name}", value)
        Select(page.find_element(By.ID, "param-checkpoint")).select_by_value(CHECKPOINT_NAME)
        page.execute_script("window.scrollTo(0, 0)")
        page.find_element(By.ID, "submit").click()
        WebDriverWait(page, 90).until(lambda p: p.find_element(By.ID, "job-panel").is_displayed())
        assert in_view(page, "job-panel"), "the job's panel is brought into view"
        WebDriverWait(page, 120).until(lambda p: state(p) == "COMPLETED")
        job_id = page.find_element(By.ID, "job-id").text
        download = page.find_element(By.CSS_SELECTOR, "#outputs figcaption a.download")
        name = download.get_attribute("download")
        assert name.endswith(".png")
        assert download.get_attribute("href").startswith("data:image/png;base64,")

        page.refresh()
        WebDriverWait(page, 90).until(lambda b: b.execute_script("return document.body.dataset.ready") == "true")
        page.find_element(By.ID, "api-key").send_keys(API_KEY)
        kept = page.find_element(By.CSS_SELECTOR, f"#recent-jobs li[data-job-id='{job_id}']")
        assert "COMPLETED" in kept.text, "the list survives the reload"
        kept.click()
        WebDriverWait(page, 90).until(lambda p: p.find_elements(By.CSS_SELECTOR, "#outputs img"))
        assert state(page) == "COMPLETED"
        assert API_KEY not in page.execute_script("return JSON.stringify(localStorage)")
    finally:
        page.set_window_size(1280, 1100)
