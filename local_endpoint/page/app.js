// The jobs page: submit a workflow (with input files), or a named workflow through its
// form (forms.js), to this local endpoint or to a RunPod endpoint, follow its progress,
// see its outputs or its error, cancel it, and list recent jobs. Inputs that would pass RunPod's request limit go through the local
// endpoint's bucket, when it has one, and are sent as URLs.
// Plain browser JavaScript, no dependencies. The API key lives only in the input
// field and this module's memory. The recent jobs (id, endpoint, time, state: never a
// key or an output) are kept in the browser's localStorage, so a reload keeps the list.

import { FINAL_STATES as FINAL, JobState, OUTPUT_LISTS, RUNPOD_REQUEST_LIMITS } from "./contract.js";
import { readForm, recall, remember, renderForm } from "./forms.js";

const RUNPOD_API = "https://api.runpod.ai/v2";
const FINAL_STATES = new Set(FINAL);
const POLL_MS = 500;
const REMEMBERED_JOBS = 50; // the recent jobs kept across reloads
const JOBS_KEY = "comfyui-worker.recent-jobs";

const $ = (id) => document.getElementById(id);
let config = { endpointId: "local", keyRequired: false, served: false };
const jobs = new Map(); // id -> { id, connection, status, submittedAt, last }
let shownId = null;
let ticks = 0;
let namedWorkflows = []; // the endpoint's answer to {"list": "workflows"}

// -- talking to the endpoint ---------------------------------------------------

// A stored job's endpoint, with the key typed now (keys are never stored).
function storedConnection(stored) {
  return { base: stored.base, key: $("api-key").value.trim(), local: stored.local };
}

function rememberJobs() {
  const kept = [...jobs.values()].slice(-REMEMBERED_JOBS).map((job) => ({
    id: job.id, base: job.connection.base, local: Boolean(job.connection.local),
    submittedAt: job.submittedAt.toISOString(), status: job.status,
  }));
  try { localStorage.setItem(JOBS_KEY, JSON.stringify(kept)); } catch { /* storage off or full: the list lives in this page */ }
}

function recallJobs() {
  let kept;
  try { kept = JSON.parse(localStorage.getItem(JOBS_KEY) || "[]"); } catch { kept = []; }
  for (const stored of Array.isArray(kept) ? kept : []) {
    if (!stored?.id || !stored.base) continue;
    jobs.set(stored.id, { id: stored.id, connection: storedConnection(stored), status: stored.status,
      submittedAt: new Date(stored.submittedAt), last: { id: stored.id, status: stored.status } });
  }
}

function connection() {
  const key = $("api-key").value.trim();
  if ($("target").value === "runpod") {
    const endpointId = $("endpoint-id").value.trim();
    if (!endpointId) throw new Error("Enter the RunPod endpoint ID.");
    if (!key) throw new Error("A RunPod endpoint needs your API key.");
    return { base: `${RUNPOD_API}/${encodeURIComponent(endpointId)}`, key };
  }
  return { base: `${location.origin}/v2/${encodeURIComponent(config.endpointId)}`, key, local: true };
}

async function call(conn, method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = conn.key || $("api-key").value.trim(); // a job kept across a reload: the key typed since
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(conn.base + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data;
  try { data = JSON.parse(text); } catch { data = { error: text }; }
  if (!response.ok) {
    const error = new Error(`${method} ${path}: HTTP ${response.status}: ${data.error || text}`);
    error.httpStatus = response.status;
    throw error;
  }
  return data;
}

// A bare workflow (API or UI format) becomes {"workflow": ...}; a job file's "input" is used as is.
function jobInput(text, wantPreview) {
  let parsed;
  try { parsed = JSON.parse(text); } catch (error) { throw new Error(`The workflow is not valid JSON: ${error.message}`, { cause: error }); }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("The workflow must be a JSON object.");
  const input = "input" in parsed ? { ...parsed.input } : { workflow: parsed };
  if (wantPreview) input.preview = true;
  return input;
}

// The chosen input files, as the job's "images" (data URIs, which the worker takes as base64).
async function addInputFiles(input) {
  const files = [...$("input-files").files];
  if (!files.length) return;
  const read = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, image: reader.result });
    reader.onerror = () => reject(new Error(`Cannot read ${file.name}: ${reader.error}`));
    reader.readAsDataURL(file);
  });
  input.images = [...(input.images || []), ...(await Promise.all(files.map(read)))];
}

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const requestSize = (input) => new Blob([JSON.stringify({ input })]).size;

// RunPod refuses a /run body over its limit. Inline inputs, largest first, go through
// this endpoint's bucket (POST /page-upload) and are sent as URLs until the request fits;
// without a bucket the job is refused here, before sending. Returns what was moved.
async function fitRequest(input, conn) {
  const limit = RUNPOD_REQUEST_LIMITS["/run"];
  let size = requestSize(input);
  if (size <= limit) return [];
  const over = `the request is ${megabytes(size)}, over RunPod's limit of ${megabytes(limit)} for /run`;
  if (!config.uploadBucket) {
    throw new Error(`Not sent: ${over}. Start the local endpoint with a bucket (BUCKET_ENDPOINT_URL and its keys) ` +
      "so large inputs go through it, or give them as URLs.");
  }
  // Where inline data sits: input files' "image", and a named workflow's media parameters (data URIs).
  const inline = [
    ...(input.images || []).map((file) => ({ name: file.name, holder: file, key: "image" })),
    ...Object.keys(input.params || {}).map((key) => ({ name: key, holder: input.params, key })),
  ].filter(({ holder, key }) => typeof holder[key] === "string" && !/^(https?|s3):\/\//.test(holder[key]) &&
    (holder !== input.params || holder[key].startsWith("data:")));
  inline.sort((a, b) => b.holder[b.key].length - a.holder[a.key].length);
  const notes = [];
  for (const file of inline) {
    const base64 = file.holder[file.key].replace(/^data:[^,]*,/, "");
    const bytes = await (await fetch(`data:application/octet-stream;base64,${base64}`)).blob();
    const headers = conn.local && conn.key ? { Authorization: `Bearer ${conn.key}` } : {};
    const response = await fetch(`/page-upload?name=${encodeURIComponent(file.name)}`, { method: "POST", headers, body: bytes });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`Not sent: ${over}, and ${answer.error || `the upload answered HTTP ${response.status}`}`);
    file.holder[file.key] = answer.url;
    notes.push(`${file.name} (${megabytes(bytes.size)}) went through bucket ${config.uploadBucket}: ${over}.`);
    size = requestSize(input);
    if (size <= limit) return notes;
  }
  throw new Error(`Not sent: the request is still ${megabytes(size)} with every input in the bucket, over ${megabytes(limit)}.`);
}

// -- named workflows ---------------------------------------------------------------

// A short job (a list question), run to its end.
async function ask(conn, input) {
  const { id } = await call(conn, "POST", "/run", { input });
  for (;;) {
    const status = await call(conn, "GET", `/status/${id}`);
    if (FINAL_STATES.has(status.status)) {
      if (status.status !== JobState.COMPLETED) throw new Error(`${status.status}: ${status.error || "no answer"}`);
      return status.output;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

async function loadWorkflows() {
  const problem = $("submit-error");
  problem.hidden = true;
  $("load-workflows").disabled = true;
  try {
    namedWorkflows = (await ask(connection(), { list: "workflows" })).workflows || [];
    const options = namedWorkflows.map((workflow) => {
      const option = document.createElement("option");
      option.value = workflow.name;
      option.textContent = workflow.name;
      return option;
    });
    $("workflow-choice").replaceChildren($("workflow-choice").options[0], ...options);
    document.body.dataset.workflows = String(namedWorkflows.length);
  } catch (error) {
    problem.textContent = `Could not load the named workflows: ${error.message}`;
    problem.hidden = false;
  } finally {
    $("load-workflows").disabled = false;
  }
}

function chosenWorkflow() {
  return namedWorkflows.find((workflow) => workflow.name === $("workflow-choice").value);
}

function showChoice() {
  const workflow = chosenWorkflow();
  $("raw-workflow").hidden = Boolean(workflow);
  $("params-form").hidden = !workflow;
  if (workflow) renderForm($("params-form"), workflow, recall(connection().base, workflow.name));
}

// The job input: the chosen named workflow's form, checked, or the workflow JSON with its files.
async function formOrWorkflowInput(conn) {
  const workflow = chosenWorkflow();
  if (!workflow) {
    const input = jobInput($("workflow-text").value, $("want-preview").checked);
    await addInputFiles(input);
    return input;
  }
  const { params, problems } = await readForm($("params-form"), workflow);
  if (problems.length) throw new Error(`Not sent: ${problems.join("; ")}.`);
  remember(conn.base, workflow.name, params);
  const input = { workflow_name: workflow.name, params };
  if ($("want-preview").checked) input.preview = true;
  return input;
}

// -- actions ---------------------------------------------------------------------

async function submit() {
  const problem = $("submit-error");
  problem.hidden = true;
  $("submit-note").hidden = true;
  $("submit").disabled = true;
  try {
    const conn = connection();
    const input = await formOrWorkflowInput(conn);
    const notes = await fitRequest(input, conn);
    $("submit-note").textContent = notes.join(" ");
    $("submit-note").hidden = !notes.length;
    const { id, status } = await call(conn, "POST", "/run", { input });
    jobs.set(id, { id, connection: conn, status, submittedAt: new Date(), last: { id, status } });
    rememberJobs();
    show(id);
    $("job-panel").scrollIntoView({ block: "start" });
  } catch (error) {
    problem.textContent = error.message;
    problem.hidden = false;
    problem.scrollIntoView({ block: "center" }); // below a long form, out of sight otherwise
  } finally {
    $("submit").disabled = false;
  }
}

async function cancel() {
  const job = jobs.get(shownId);
  if (!job) return;
  $("cancel").disabled = true;
  try {
    update(job, await call(job.connection, "POST", `/cancel/${job.id}`));
  } catch (error) {
    $("progress-text").textContent = `Cancel failed: ${error.message}`;
  }
}

async function poll(job) {
  try {
    update(job, await call(job.connection, "GET", `/status/${job.id}`));
  } catch (error) {
    if (error.httpStatus === 404) update(job, { id: job.id, status: "EXPIRED", error: "the endpoint no longer knows this job (its result expired)" });
    else $("progress-text").textContent = `Status check failed: ${error.message}`;
  }
}

async function tick() {
  ticks += 1;
  const pending = [...jobs.values()].filter((job) => !FINAL_STATES.has(job.status) && job.status !== "EXPIRED");
  // The shown job every tick; the others every 4th.
  await Promise.all(pending.filter((job) => job.id === shownId || ticks % 4 === 0).map(poll));
  setTimeout(tick, POLL_MS);
}

// -- rendering -------------------------------------------------------------------

function update(job, status) {
  const changed = job.status !== status.status;
  job.status = status.status;
  job.last = status;
  if (changed) rememberJobs();
  renderRecent();
  if (job.id === shownId) renderJob(job);
}

function show(id) {
  shownId = id;
  $("job-panel").hidden = false;
  $("outputs").replaceChildren();
  $("preview").hidden = true;
  const job = jobs.get(id);
  renderJob(job);
  renderRecent();
  if (!job.last.output && job.status !== "EXPIRED") poll(job); // one kept across a reload: its result
}

function renderJob(job) {
  const status = job.last;
  const state = status.status;
  const finished = FINAL_STATES.has(state) || state === "EXPIRED";
  $("job-id").textContent = job.id;
  $("job-state").textContent = state;
  $("job-state").className = `state ${state}`;
  $("cancel").hidden = finished;
  $("cancel").disabled = false;
  const output = status.output;
  const bar = $("progress-bar");
  if (state === JobState.IN_QUEUE) {
    bar.value = 0;
    $("progress-text").textContent = "Waiting for a worker.";
  } else if (state === JobState.IN_PROGRESS && output && typeof output.progress === "number") {
    bar.value = output.progress;
    $("progress-text").textContent = progressText(output);
    if (output.preview) {
      $("preview").src = `data:${output.preview.mime_type};base64,${output.preview.data}`;
      $("preview").hidden = false;
    }
  } else if (state === JobState.IN_PROGRESS) {
    $("progress-text").textContent = "Starting.";
  } else if (state === JobState.COMPLETED) {
    bar.value = 1;
    const seconds = status.executionTime !== undefined ? ` in ${(status.executionTime / 1000).toFixed(1)} s` : "";
    $("progress-text").textContent = `Done${seconds}.`;
    $("preview").hidden = true;
    renderOutputs(output || {});
  } else {
    $("progress-text").textContent = state === JobState.CANCELLED ? "Cancelled." : "";
  }
  renderError(finished && state !== JobState.COMPLETED && state !== JobState.CANCELLED ? status : null);
}

function progressText(p) {
  const parts = [p.message || p.status];
  if (p.node_id) parts.push(`node ${p.node_id} (${p.node_class})`);
  if (p.nodes_total) parts.push(`${p.nodes_done} of ${p.nodes_total} nodes`);
  parts.push(`${Math.round(100 * p.progress)}%`);
  if (typeof p.eta_s === "number") parts.push(`about ${Math.ceil(p.eta_s)} s left`);
  return parts.join(" · ");
}

function renderError(status) {
  const box = $("job-error");
  box.hidden = !status;
  if (!status) return;
  let message = status.error || status.status;
  try { message = JSON.parse(message).error_message || message; } catch { /* a plain message */ }
  $("job-error-message").textContent = `${status.status}: ${message}`;
  $("job-error-details").textContent = JSON.stringify(status.output ?? {}, null, 2);
}

function renderOutputs(output) {
  const figures = [];
  for (const [listMedia, list] of Object.entries(OUTPUT_LISTS)) {
    for (const entry of output[list] || []) {
      const src = entry.type === "base64" ? `data:${entry.mime_type};base64,${entry.data}` : entry.data;
      const media = entry.media || listMedia;
      let element;
      if (media === "image") {
        element = document.createElement("img");
        element.alt = entry.filename;
      } else if (media === "video" || media === "audio") {
        element = document.createElement(media);
        element.controls = true;
      } else {
        element = document.createElement("a");
        element.textContent = `download ${entry.filename}`;
        element.download = entry.filename;
      }
      element[element.tagName === "A" ? "href" : "src"] = src;
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      caption.textContent = `${entry.filename} (node ${entry.node_id}) `;
      if (element.tagName !== "A") {
        const download = document.createElement("a");
        download.className = "download";
        download.textContent = "download";
        download.href = src;
        download.download = entry.filename;
        caption.append(download);
      }
      figure.append(element, caption);
      figures.push(figure);
    }
  }
  $("outputs").replaceChildren(...figures);
}

function renderRecent() {
  const items = [...jobs.values()].reverse().map((job) => {
    const item = document.createElement("li");
    item.dataset.jobId = job.id;
    const id = document.createElement("code");
    id.textContent = job.id;
    const state = document.createElement("span");
    state.className = `state ${job.status}`;
    state.textContent = job.status;
    item.append(`${job.submittedAt.toLocaleTimeString()} `, id, " ", state);
    if (job.id === shownId) item.style.fontWeight = "bold";
    item.addEventListener("click", () => show(job.id));
    return item;
  });
  $("recent-jobs").replaceChildren(...items);
}

// -- wiring ----------------------------------------------------------------------

async function readDroppedFile(file) {
  const text = await file.text();
  try { $("workflow-text").value = JSON.stringify(JSON.parse(text), null, 2); } catch { $("workflow-text").value = text; }
}

async function start() {
  try { config = { ...(await (await fetch("/page-config.json")).json()), served: true }; } catch { /* served elsewhere: RunPod only */ }
  $("target").addEventListener("change", () => { $("endpoint-id-field").hidden = $("target").value !== "runpod"; });
  $("submit").addEventListener("click", submit);
  $("load-workflows").addEventListener("click", loadWorkflows);
  $("workflow-choice").addEventListener("change", showChoice);
  $("cancel").addEventListener("click", cancel);
  $("workflow-file").addEventListener("change", (event) => event.target.files[0] && readDroppedFile(event.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer.files[0]) readDroppedFile(event.dataTransfer.files[0]);
  });
  if (config.keyRequired) $("api-key").placeholder = "this endpoint needs its key";
  recallJobs();
  renderRecent();
  document.body.dataset.ready = "true";
  tick();
  if (config.served && !config.keyRequired) loadWorkflows(); // this endpoint answers without a key
}

start();
