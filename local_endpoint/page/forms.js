// A form per named workflow, rendered from its parameters' JSON Schema (the answer to
// {"list": "workflows"}): a number input (and a slider, when the range is small) within
// the bounds, a select for choices and for models (installed files, or another by URL),
// a text area for text, a checkbox for yes/no, a file picker with a preview for media,
// and a "random" box beside a seed. Defaults are filled in; the last values sent are
// remembered per endpoint and workflow in this browser (localStorage), files excepted.
// `readForm` checks every value against the schema before anything is sent.

const OTHER_MODEL = "__other__";
const MAX_RANDOM_SEED = 2 ** 53 - 1; // JavaScript's exact integers, as the worker's randomize_seeds

const storageKey = (endpoint, name) => `comfy-worker-form:${endpoint}:${name}`;

export function recall(endpoint, name) {
  try { return JSON.parse(localStorage.getItem(storageKey(endpoint, name)) || "{}"); } catch { return {}; }
}

export function remember(endpoint, name, params) {
  const kept = Object.fromEntries(Object.entries(params).filter(([, value]) => !String(value).startsWith("data:")));
  try { localStorage.setItem(storageKey(endpoint, name), JSON.stringify(kept)); } catch { /* storage off: not remembered */ }
}

const isSeed = (name, schema) => /(^|_)seed$/.test(name) || (schema["x-comfy-inputs"] || []).some((input) => /\.(noise_)?seed$/.test(input));
const isMedia = (schema) => typeof schema.contentMediaType === "string";
const isNumber = (schema) => schema.type === "integer" || schema.type === "number";

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// The form's fields for one workflow, in its schema's order, into `container`.
export function renderForm(container, workflow, remembered) {
  const schema = workflow.parameters;
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, property]) => {
    const start = name in remembered ? remembered[name] : property.default;
    const field = element("div", { class: "param", "data-param": name });
    const title = `${property.title || name}${required.has(name) ? " *" : ""}`;
    field.append(element("label", { for: `param-${name}` }, title), control(name, property, start));
    if (property.description) field.append(element("small", {}, property.description));
    return field;
  });
  const description = workflow.description ? [element("p", { class: "workflow-description" }, workflow.description)] : [];
  container.replaceChildren(...description, ...fields);
}

function control(name, schema, start) {
  const id = `param-${name}`;
  if (isMedia(schema)) {
    const kind = schema.contentMediaType.split("/")[0];
    const picker = element("input", { id, type: "file", accept: schema.contentMediaType });
    const preview = element(kind === "image" ? "img" : kind, { class: "media-preview", hidden: "", controls: "" });
    picker.addEventListener("change", () => {
      const file = picker.files[0];
      preview.hidden = !file;
      if (file) preview.src = URL.createObjectURL(file);
    });
    return element("div", {}, picker, preview);
  }
  if (Array.isArray(schema.enum)) {
    const select = element("select", { id }, ...schema.enum.map((choice) => element("option", { value: choice }, String(choice))));
    if (start !== undefined) select.value = start;
    return select;
  }
  if (Array.isArray(schema["x-installed"])) return modelControl(id, schema["x-installed"], start);
  if (schema.type === "boolean") {
    const box = element("input", { id, type: "checkbox" });
    box.checked = Boolean(start);
    return box;
  }
  if (isNumber(schema)) return numberControl(id, name, schema, start);
  const text = element("textarea", { id, rows: "3", class: "param-text" });
  text.value = start ?? "";
  return text;
}

function modelControl(id, installed, start) {
  const select = element("select", { id },
    ...installed.map((file) => element("option", { value: file }, file)),
    element("option", { value: OTHER_MODEL }, "another: a URL, hf:// or s3:// reference"));
  const other = element("input", { id: `${id}-other`, type: "text", placeholder: "https://…/model.safetensors", hidden: "" });
  const known = start === undefined || installed.includes(start);
  select.value = known ? (start ?? installed[0] ?? OTHER_MODEL) : OTHER_MODEL;
  if (!known) other.value = start;
  const sync = () => { other.hidden = select.value !== OTHER_MODEL; };
  select.addEventListener("change", sync);
  sync();
  return element("div", { class: "model" }, select, other);
}

function numberControl(id, name, schema, start) {
  const bounds = { min: schema.minimum, max: schema.maximum, step: schema.type === "integer" ? "1" : "any" };
  const number = element("input", { id, type: "number", ...bounds });
  number.value = start ?? "";
  const parts = [number];
  const small = schema.minimum !== undefined && schema.maximum !== undefined && schema.maximum - schema.minimum <= 10000;
  if (small) {
    const slider = element("input", { type: "range", "aria-label": `${name} slider`, ...bounds, step: bounds.step === "any" ? (schema.maximum - schema.minimum) / 100 : "1" });
    slider.value = number.value;
    slider.addEventListener("input", () => { number.value = slider.value; });
    number.addEventListener("input", () => { slider.value = number.value; });
    parts.push(slider);
  }
  if (isSeed(name, schema)) {
    const random = element("input", { id: `${id}-random`, type: "checkbox" });
    parts.push(element("label", { class: "random" }, random, " random"));
  }
  return element("div", { class: "number" }, ...parts);
}

const readAsDataUrl = (file) => new Promise((resolve, reject) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result);
  reader.onerror = () => reject(new Error(`Cannot read ${file.name}: ${reader.error}`));
  reader.readAsDataURL(file);
});

// The form's values as the job's params, or the problems found (each naming the parameter).
export async function readForm(container, workflow) {
  const schema = workflow.parameters;
  const required = new Set(schema.required || []);
  const params = {};
  const problems = [];
  for (const [name, property] of Object.entries(schema.properties || {})) {
    const value = await readValue(container, name, property);
    if (value === undefined || value === "") {
      if (required.has(name)) problems.push(`${name}: required`);
      continue;
    }
    const problem = checkValue(value, property);
    if (problem) problems.push(`${name}: ${problem}`);
    else params[name] = value;
  }
  return { params, problems };
}

async function readValue(container, name, schema) {
  const control = container.querySelector(`#param-${CSS.escape(name)}`);
  if (isMedia(schema)) return control.files[0] ? readAsDataUrl(control.files[0]) : undefined;
  if (Array.isArray(schema["x-installed"])) {
    return control.value === OTHER_MODEL ? container.querySelector(`#param-${CSS.escape(name)}-other`).value.trim() : control.value;
  }
  if (schema.type === "boolean") return control.checked;
  if (Array.isArray(schema.enum)) return schema.enum.find((choice) => String(choice) === control.value);
  if (isNumber(schema)) {
    const random = container.querySelector(`#param-${CSS.escape(name)}-random`);
    if (random && random.checked) {
      const low = Math.max(schema.minimum ?? 0, 0);
      const high = Math.min(schema.maximum ?? MAX_RANDOM_SEED, MAX_RANDOM_SEED);
      control.value = String(low + Math.floor(Math.random() * (high - low + 1)));
    }
    return control.value === "" ? undefined : Number(control.value);
  }
  return control.value;
}

function checkValue(value, schema) {
  if (!isNumber(schema)) return null;
  if (!Number.isFinite(value)) return "must be a number";
  if (schema.type === "integer" && !Number.isInteger(value)) return "must be a whole number";
  if (schema.minimum !== undefined && value < schema.minimum) return `must be at least ${schema.minimum}`;
  if (schema.maximum !== undefined && value > schema.maximum) return `must be at most ${schema.maximum}`;
  return null;
}
