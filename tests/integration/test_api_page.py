"""The local endpoint's API page (/api) in a real headless Chromium, as a person uses it: the key
typed key by key (a wrong one first), the OpenAPI document shown by Swagger UI, scrolled down to
the named workflows' schemas, a job sent with "Try it out" that the real worker runs, and a reload
that asks for the key again. Screenshots go to .local/artifacts/."""

from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from comfy_worker_client import EndpointClient
from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from tests.support.local_endpoint import API_KEY
from tests.support.workflows import REPO_ROOT

ARTIFACTS = REPO_ROOT / ".local" / "artifacts"
ROUTES = ["/run", "/runsync", "/status/{job_id}", "/cancel/{job_id}"]


@pytest.fixture
def api_page(browser: WebDriver, endpoint, request) -> WebDriver:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(endpoint[0].split("/v2/")[0] + "/api")
    ready(browser)
    yield browser
    browser.save_screenshot(str(ARTIFACTS / f"api-page-{request.node.name}.png"))


def ready(page: WebDriver) -> None:
    WebDriverWait(page, 30).until(lambda p: p.execute_script("return document.body.dataset.ready") == "true")


def type_key(page: WebDriver, key: str) -> None:
    field = page.find_element(By.ID, "api-key")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    for character in key:  # key by key, as a person types
        field.send_keys(character)
    field.send_keys(Keys.ENTER)


def error_text(page: WebDriver) -> str:
    WebDriverWait(page, 30).until(lambda p: p.find_element(By.ID, "api-error").is_displayed())
    return page.find_element(By.ID, "api-error").text


def routes_shown(page: WebDriver) -> list[str]:
    WebDriverWait(page, 90).until(lambda p: p.execute_script("return document.body.dataset.shown") == "true")
    WebDriverWait(page, 30).until(lambda p: p.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    return [
        element.text.replace("\u200b", "") for element in page.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    ]


def test_the_api_page_shows_the_document_and_try_it_out_runs_a_named_workflow(api_page, endpoint):
    page = api_page
    assert page.execute_script("return document.body.dataset.shown") is None, "nothing is shown before the key"
    page.find_element(By.ID, "show").click()
    assert error_text(page) == "This endpoint needs its API key: type it above."

    type_key(page, "not-the-key")
    assert error_text(page) == "The endpoint refused the key: type its API key."

    type_key(page, API_KEY)
    assert routes_shown(page) == ROUTES
    assert not page.find_element(By.ID, "api-error").is_displayed()

    # Down to the schemas: one input form per named workflow, the question and the lookup.
    models = page.find_element(By.CSS_SELECTOR, "section.models")
    page.execute_script("arguments[0].scrollIntoView()", models)
    schemas = {
        element.text: element
        for element in models.find_elements(
            By.CSS_SELECTOR,
            "article[data-json-schema-level='0'] > .json-schema-2020-12-head .json-schema-2020-12__title",
        )
    }
    assert {"Workflow_txt2img", "Workflow_img2img", "GraphJobInput", "ListJobInput", "ResultOfJobInput"} <= set(schemas)
    assert page.execute_script("return window.scrollY") > 0
    txt2img = schemas["Workflow_txt2img"]
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", txt2img)
    txt2img.click()  # opens the schema: its properties, `params` among them
    article = txt2img.find_element(By.XPATH, "ancestor::article[1]")
    WebDriverWait(page, 10).until(lambda p: "params" in article.text)
    assert "workflow_name" in article.text

    # POST /run, Try it out: a named workflow's job, typed into the request body.
    run = page.find_element(By.ID, "operations-default-run")
    page.execute_script("arguments[0].scrollIntoView()", run)
    run.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    WebDriverWait(page, 10).until(lambda p: run.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    run.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    body = WebDriverWait(page, 10).until(lambda p: run.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.BACKSPACE)
    params = {"checkpoint": CHECKPOINT_NAME, "steps": 2, "width": 64, "height": 64, "prompt": "a fox", "seed": 3}
    body.send_keys(json.dumps({"input": {"workflow_name": "txt2img", "params": params}}))
    run.find_element(By.CSS_SELECTOR, ".execute").click()
    answer = WebDriverWait(page, 30).until(
        lambda p: run.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre")
    )
    submitted = json.loads(answer.text)
    assert submitted["status"] == "IN_QUEUE"
    assert run.find_element(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status").text == "200"

    with EndpointClient(endpoint[0], API_KEY) as client:
        final = client.wait(submitted["id"], poll_interval_s=0.2)
    assert final["output"]["workflow_name"] == "txt2img"
    assert len(final["output"]["images"]) == 1

    # A reload forgets the key (it lived in the tab's memory): the document waits for it again.
    page.refresh()
    ready(page)
    assert page.find_element(By.ID, "api-key").get_property("value") == ""
    assert page.execute_script("return document.body.dataset.shown") is None
    type_key(page, API_KEY)
    assert routes_shown(page) == ROUTES
