// Run on RunPod: the editor part. Settings (endpoint ID or base URL, API key), a
// "Run on RunPod" button beside Queue and a command (Alt+Enter), "Check against
// the endpoint", and a panel listing the runs in flight with their state, progress and
// outputs. Every request goes to this ComfyUI's own /runpod/ routes (bridge.py), which
// keep the key: it is sent there once from the settings dialog and never comes back.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { FINAL_STATES, JobState, RUNPOD_REQUEST_LIMITS } from "./contract.js";

const POLL_MS = 1000;
const FINAL = new Set(FINAL_STATES);
const KEY_KEPT = "kept: type a new key to replace it";
const KEY_MISSING = "none for this endpoint";
const RUNNING_COLOR = "#335f8a";
const MISSING_COLOR = "#8a3333";

const runs = new Map(); // job id -> {id, submittedAt, state, message, progress, saved, error, nodeId}
let panelClosed = false; // closed by its ×: shown again at the next run
const marked = new Map(); // node id -> its color before we marked it

async function bridge(method, path, body) {
  const response = await api.fetchApi(`/runpod${path}`, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(answer.error || `HTTP ${response.status}`);
    error.nodeIds = answer.node_ids || []; // the nodes it is about, to mark
    throw error;
  }
  return answer;
}

function toast(severity, summary, detail) {
  app.extensionManager?.toast?.add({ severity, summary, detail, life: severity === "error" ? 10000 : 4000 });
}

// -- settings: fields of the bridge's own ---------------------------------------------
// Each is typed freely and saved once, on Enter or when it is left, never per keystroke;
// the field is never rewritten while it has the focus. The key's field is a password
// field that the bridge never fills (it keeps the key, for the endpoint it was given with).

function showSettings(settings) {
  document.dispatchEvent(new CustomEvent("runpod-settings", { detail: settings }));
}

function keyPlaceholder(settings) {
  return settings.has_key ? KEY_KEPT : KEY_MISSING;
}

function settingField(key) {
  return () => {
    const secret = key === "api_key";
    const box = document.createElement("div");
    box.style.cssText = "display:flex;gap:6px;align-items:center";
    const input = document.createElement("input");
    input.id = `runpod-setting-${key}`;
    input.className = "p-inputtext runpod-setting";
    input.type = secret ? "password" : "text";
    input.autocomplete = secret ? "new-password" : "off";
    input.spellcheck = false;
    input.style.minWidth = "22em";
    let saved = "";
    const show = (settings) => {
      if (secret) input.placeholder = keyPlaceholder(settings);
      else if (document.activeElement !== input) input.value = saved = settings[key] || "";
    };
    const listener = (event) => (input.isConnected ? show(event.detail) : document.removeEventListener("runpod-settings", listener));
    document.addEventListener("runpod-settings", listener);
    bridge("GET", "/settings").then(show).catch(() => {});
    const save = async (value) => {
      try {
        const settings = await bridge("POST", "/settings", { [key]: value });
        if (secret) input.value = ""; // the page keeps no key
        saved = secret ? "" : value;
        showSettings(settings);
      } catch (error) {
        toast("error", "RunPod settings", error.message);
      }
    };
    input.addEventListener("change", () => {
      const value = input.value.trim();
      if ((secret && value) || (!secret && value !== saved)) save(value);
    });
    input.addEventListener("keydown", (event) => event.key === "Enter" && input.blur());
    box.append(input);
    if (secret) {
      const forget = document.createElement("button");
      forget.className = "p-button p-button-text p-button-sm runpod-forget-key";
      forget.textContent = "Forget";
      forget.title = "Remove the key kept for this endpoint";
      forget.onclick = () => save("");
      box.append(forget);
    }
    return box;
  };
}

// -- marking nodes on the canvas -------------------------------------------------

function mark(nodeId, color) {
  const node = app.graph?.getNodeById(Number(nodeId)) ?? app.graph?.getNodeById(nodeId);
  if (!node) return;
  if (!marked.has(String(nodeId))) marked.set(String(nodeId), node.bgcolor);
  node.bgcolor = color;
  app.graph.setDirtyCanvas(true, true);
}

function unmarkAll() {
  for (const [nodeId, color] of marked) {
    const node = app.graph?.getNodeById(Number(nodeId)) ?? app.graph?.getNodeById(nodeId);
    if (node) node.bgcolor = color;
  }
  marked.clear();
  app.graph?.setDirtyCanvas(true, true);
}

// -- the runs panel ----------------------------------------------------------------

function panel() {
  let box = document.getElementById("runpod-runs");
  if (!box) {
    box = document.createElement("div");
    box.id = "runpod-runs";
    // Bottom left, beside the sidebar: ComfyUI's minimap and zoom controls live bottom right,
    // its Run and queue buttons top right.
    box.style.cssText = "position:fixed;left:64px;bottom:12px;z-index:1000;width:340px;max-height:60vh;" +
      "overflow:auto;background:var(--comfy-menu-bg,#222);color:var(--fg-color,#ddd);border:1px solid #555;" +
      "border-radius:8px;padding:8px;font:12px sans-serif";
    document.body.append(box);
  }
  return box;
}

function headerButton(label, title, onclick) {
  const button = document.createElement("button");
  button.textContent = label;
  button.title = title;
  button.className = "runpod-panel-button";
  button.style.cssText = "margin-left:6px;background:none;border:1px solid #666;border-radius:4px;color:inherit;cursor:pointer";
  button.onclick = onclick;
  return button;
}

function clearFinished() {
  for (const [id, run] of runs) if (FINAL.has(run.state)) runs.delete(id);
  render();
}

function render() {
  if (panelClosed || !runs.size) {
    document.getElementById("runpod-runs")?.remove();
    return;
  }
  const items = [...runs.values()].reverse().map((run) => {
    const item = document.createElement("div");
    item.className = "runpod-run";
    item.dataset.jobId = run.id;
    item.dataset.state = run.state;
    item.style.cssText = "margin:6px 0;padding-top:4px;border-top:1px solid #444";
    const about = document.createElement("div");
    about.className = "runpod-run-about";
    about.style.opacity = "0.7";
    about.textContent = `${run.id.slice(0, 13)} · ${run.submittedAt}`;
    about.title = run.id;
    item.append(about);
    const head = document.createElement("div");
    const percent = typeof run.progress === "number" && !FINAL.has(run.state) ? ` ${Math.round(100 * run.progress)}%` : "";
    head.textContent = `${run.state}${percent} ${run.message || ""}`.trim();
    head.className = "runpod-run-state";
    item.append(head);
    if (typeof run.progress === "number" && !FINAL.has(run.state)) {
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = run.progress;
      bar.style.width = "100%";
      item.append(bar);
    }
    if (!FINAL.has(run.state)) {
      const stop = document.createElement("button");
      stop.textContent = "Cancel";
      stop.className = "runpod-cancel";
      stop.onclick = () => cancel(run.id);
      item.append(stop);
    }
    if (run.error) {
      const error = document.createElement("div");
      error.className = "runpod-error";
      error.style.color = "#f88";
      error.textContent = run.error;
      item.append(error);
    }
    if (run.preview && !FINAL.has(run.state)) {
      const preview = document.createElement("img");
      preview.className = "runpod-preview";
      preview.src = run.preview;
      preview.style.cssText = "max-width:128px;display:block;margin-top:4px";
      item.append(preview);
    }
    for (const file of run.saved || []) {
      const image = document.createElement("img");
      image.src = api.apiURL(`/view?filename=${encodeURIComponent(file.filename)}&type=output&subfolder=`);
      image.title = `output/${file.filename}`;
      image.style.cssText = "max-width:100%;display:block;margin-top:4px";
      const name = document.createElement("div");
      name.className = "runpod-output-name";
      name.textContent = `output/${file.filename}`;
      item.append(image, name);
    }
    return item;
  });
  const title = document.createElement("div");
  title.style.cssText = "display:flex;align-items:center";
  const label = document.createElement("strong");
  label.textContent = "Runs on RunPod";
  label.style.flex = "1";
  title.append(
    label,
    headerButton("Clear finished", "Remove the runs that ended from this list", clearFinished),
    headerButton("×", "Close (the runs go on; the list shows again at the next run)", () => {
      panelClosed = true;
      panel().remove();
    }),
  );
  panel().replaceChildren(title, ...items);
}

// -- actions ------------------------------------------------------------------------

// The widgets' own "control before/after generate" (a seed set to randomize, say), as
// ComfyUI's Run applies them around queueing: before the graph is read, after it was sent.
function widgetsCallback(name) {
  const graphs = [app.graph, ...(app.graph?.subgraphs?.values?.() ?? [])];
  for (const graph of graphs) {
    for (const node of graph?.nodes ?? []) {
      for (const widget of node.widgets ?? []) widget[name]?.({ isPartialExecution: false });
    }
  }
  app.graph?.setDirtyCanvas(true, true);
}

async function runOnRunPod() {
  try {
    unmarkAll(); // the marks of an earlier failure or check
    widgetsCallback("beforeQueued");
    const { output, workflow } = await app.graphToPrompt();
    const settings = app.extensionManager?.setting;
    const preview = Boolean(settings?.get("RunPod.Previews"));
    const timeout = Number(settings?.get("RunPod.ExecutionTimeout")) || 0;
    const { job_id: id, files, uploaded } = await bridge("POST", "/run", { prompt: output, workflow, preview, execution_timeout_s: timeout });
    widgetsCallback("afterQueued");
    panelClosed = false;
    const submittedAt = new Date().toLocaleTimeString();
    runs.set(id, { id, submittedAt, state: JobState.IN_QUEUE, message: files.length ? `with ${files.length} input file(s)` : "" });
    render();
    const through = uploaded.length ? `; ${uploaded.join(", ")} went through your bucket (over RunPod's ${RUNPOD_REQUEST_LIMITS["/run"] / 1e6} MB limit)` : "";
    toast("info", "Run on RunPod", `job ${id} submitted${through}`);
    follow(id);
  } catch (error) {
    for (const nodeId of error.nodeIds || []) mark(nodeId, MISSING_COLOR);
    toast("error", "Run on RunPod", error.message);
  }
}

async function follow(id) {
  const run = runs.get(id);
  while (run && !FINAL.has(run.state)) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      const status = await bridge("GET", `/status/${id}`);
      run.state = status.status;
      const output = status.output || {};
      if (run.state === JobState.IN_PROGRESS && typeof output.progress === "number") {
        run.progress = output.progress;
        if (output.preview) run.preview = `data:${output.preview.mime_type};base64,${output.preview.data}`;
        run.message = output.eta_s ? `${output.message} (about ${Math.ceil(output.eta_s)} s left)` : output.message;
        if (output.node_id && output.node_id !== run.nodeId) {
          unmarkAll();
          run.nodeId = output.node_id;
          mark(output.node_id, RUNNING_COLOR);
        }
      }
      if (FINAL.has(run.state)) {
        unmarkAll();
        run.message = run.state === JobState.COMPLETED ? `${(status.saved || []).length} output(s) in output/` : "";
        run.saved = status.saved || [];
        run.preview = null;
        if (run.state !== JobState.COMPLETED) fail(run, status);
        else {
          showInNodes(run.saved);
          toast("success", "Run on RunPod", `job ${id}: ${run.message}`);
        }
      }
    } catch (error) {
      run.message = `status check failed: ${error.message}`;
    }
    render();
  }
}

// The saved outputs as the nodes' previews, as a local run shows them (ComfyUI's "executed" event).
function showInNodes(saved) {
  for (const file of saved) {
    if (!file.node_id || typeof api.dispatchCustomEvent !== "function") continue;
    const image = { filename: file.filename, subfolder: file.subfolder, type: file.type };
    api.dispatchCustomEvent("executed", { node: file.node_id, display_node: file.node_id, output: { images: [image] } });
  }
}

// A run that ended without outputs: the worker's error (naming the node), and what to do
// about it (the bridge's advice: a timeout, an output too large for the response...).
function fail(run, status) {
  const output = status.output || {};
  const ended = run.state === JobState.TIMED_OUT ? "the job ran past its execution timeout" : run.state.toLowerCase();
  const what = output.error || status.error || ended;
  run.error = status.advice ? `${String(what).replace(/\.$/, "")}. What to do: ${status.advice}` : what;
  // The worker names the node: node_errors (a refused workflow), node_id (a failed node or
  // model), problems' fields (input.workflow.<node id>.class_type: a type it lacks).
  const details = output.details || {};
  const inProblems = (details.problems || []).map((problem) => /^input\.workflow\.([^.[]+)\./.exec(problem.field || "")?.[1]);
  const nodeIds = [...(details.node_errors || []).map((error) => error.node_id), details.node_id, ...inProblems]
    .filter((id) => id != null);
  for (const nodeId of nodeIds) mark(nodeId, MISSING_COLOR);
  toast(run.state === JobState.CANCELLED ? "info" : "error", `RunPod job ${run.state}`, run.error);
}

async function cancel(id) {
  try {
    await bridge("POST", `/cancel/${id}`);
  } catch (error) {
    toast("error", "Cancel on RunPod", error.message);
  }
}

async function checkAgainstEndpoint() {
  try {
    unmarkAll();
    const { output, workflow } = await app.graphToPrompt();
    // The worker's own answer to a validate-only job: each problem names its node and what to do.
    const { valid, problems, more_problems: more } = await bridge("POST", "/check", { prompt: output, workflow });
    for (const problem of problems) if (problem.node_id) mark(problem.node_id, MISSING_COLOR);
    const lines = problems.map((problem) => problem.problem);
    if (more) lines.push(`and ${more} more`);
    if (!valid) toast("warn", "The endpoint cannot run this workflow", lines.join("\n"));
    else toast("success", "Check against the endpoint", "the endpoint has every node type, model and value this workflow names");
  } catch (error) {
    for (const nodeId of error.nodeIds || []) mark(nodeId, MISSING_COLOR);
    toast("error", "Check against the endpoint", error.message);
  }
}

app.registerExtension({
  name: "RunPod.RunOnRunPod",
  settings: [
    // Kept by the bridge (bridge.py), not in ComfyUI's settings file: settingField.
    { id: "RunPod.EndpointId", category: ["RunPod", "Endpoint", "ID"], name: "Endpoint ID",
      type: settingField("endpoint_id"), defaultValue: "" },
    { id: "RunPod.BaseUrl", category: ["RunPod", "Endpoint", "Base URL"], name: "Base URL (instead of an ID, e.g. the local endpoint)",
      type: settingField("base_url"), defaultValue: "" },
    { id: "RunPod.ApiKey", category: ["RunPod", "Endpoint", "API key"],
      name: "API key (kept by ComfyUI's server for this endpoint, never shown)",
      type: settingField("api_key"), defaultValue: "" },
    { id: "RunPod.Previews", category: ["RunPod", "Run", "Previews"], name: "Show latent previews while sampling",
      type: "boolean", defaultValue: false },
    { id: "RunPod.ExecutionTimeout", category: ["RunPod", "Run", "Execution timeout"],
      name: "Execution timeout in seconds (0: the endpoint's own)", type: "number", defaultValue: 0, attrs: { min: 0, step: 1 } },
  ],
  commands: [
    { id: "RunPod.Run", label: "Run on RunPod", icon: "pi pi-cloud-upload", function: runOnRunPod },
    { id: "RunPod.Check", label: "Check against the RunPod endpoint", icon: "pi pi-check-square", function: checkAgainstEndpoint },
  ],
  keybindings: [{ combo: { key: "Enter", alt: true }, commandId: "RunPod.Run" }], // Ctrl+(Shift/Alt)+Enter are Queue's
  menuCommands: [{ path: ["RunPod"], commands: ["RunPod.Run", "RunPod.Check"] }],
  actionBarButtons: [
    { icon: "pi pi-cloud-upload", label: "Run on RunPod", tooltip: "Run this workflow on your RunPod endpoint", onClick: runOnRunPod },
  ],
});
