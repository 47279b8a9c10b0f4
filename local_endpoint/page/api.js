// The API page (/api): this endpoint's OpenAPI document (GET /v2/<id>/openapi.json, the
// worker's answer to {"list": "openapi"}, built from the job contract) shown by Swagger UI,
// whose "Try it out" sends real requests, with the key typed here. Plain browser JavaScript;
// the key lives in this tab's memory only, so a reload asks for it again.

const $ = (id) => document.getElementById(id);
let config = { endpointId: "local", keyRequired: false };

function documentUrl() {
  return `${location.origin}/v2/${encodeURIComponent(config.endpointId)}/openapi.json`;
}

function fail(message) {
  $("api-error").textContent = message;
  $("api-error").hidden = false;
  document.body.dataset.shown = "false";
}

// Reads the document with the key typed now, then hands it to Swagger UI.
async function show() {
  const key = $("api-key").value.trim();
  if (config.keyRequired && !key) return fail("This endpoint needs its API key: type it above.");
  $("show").disabled = true;
  let answer, body;
  try {
    answer = await fetch(documentUrl(), { headers: key ? { Authorization: `Bearer ${key}` } : {} });
    body = await answer.json().catch(() => ({}));
  } catch (error) {
    return fail(`The endpoint did not answer (${error.message}).`);
  } finally {
    $("show").disabled = false;
  }
  if (answer.status === 401) return fail("The endpoint refused the key: type its API key.");
  if (!answer.ok) return fail(`The endpoint gave no API document (HTTP ${answer.status}): ${body.error || "no reason given"}.`);
  if (typeof window.SwaggerUIBundle !== "function") {
    return fail("Swagger UI is not installed beside the local endpoint: run bash scripts/dev/setup_local.sh.");
  }
  $("api-error").hidden = true;
  window.ui = window.SwaggerUIBundle({
    spec: body,
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    // Every request "Try it out" sends carries the key typed above (now, not when loaded).
    requestInterceptor: (request) => {
      const now = $("api-key").value.trim();
      if (now) request.headers.Authorization = `Bearer ${now}`;
      return request;
    },
  });
  document.body.dataset.shown = "true";
}

async function start() {
  try {
    config = { ...config, ...(await (await fetch("/page-config.json")).json()) };
  } catch { /* served elsewhere: the defaults */ }
  $("document-link").href = documentUrl();
  if (config.keyRequired) $("api-key").placeholder = "this endpoint needs its key";
  $("connection").addEventListener("submit", (event) => { event.preventDefault(); show(); });
  document.body.dataset.ready = "true";
  if (!config.keyRequired) await show(); // nothing to type: shown at once
}

start();
