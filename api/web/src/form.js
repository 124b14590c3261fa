// The Create form: filled from GET /models (each model's defaults, limits, native size and quality presets) or from a
// job's request (a shared link), read into a POST /generate body.
const $ = (id) => document.getElementById(id);

// Used only when a server's /models has no defaults or limits: small, so a CPU run stays short.
const FALLBACK = {
  defaults: { num_frames: 8, height: 64, width: 128, steps: 4, guidance_scale: 7.5, fps: 8 },
  limits: { max_frames: 24, max_height: 512, max_steps: 100 },
};
const MIN_FRAMES = 8; // the API's lower bound (a limit the models do not state)
const SIZE_STEP = 64; // heights are multiples of 64, widths twice the height
// The solver of a request that names neither `scheduler` nor `quality` (GenerationRequest; /models does not say).
const DEFAULT_SOLVER = "ddim";
const PROMPT_MISSING = "Write a prompt first: what the panorama should show.";

let models = [];
// The chosen model as the form uses it: {defaults, native: [height, width], presets: {quality: {scheduler, steps}}}
let chosen = { defaults: FALLBACK.defaults, native: [FALLBACK.defaults.height, FALLBACK.defaults.width], presets: {} };

const sizeText = (height) => `${height} × ${2 * height}`;
const chosenHeight = () => Number($("size").value.split("x")[0]);

function setNumber(input, value, min, max) {
  Object.assign(input, { min: String(min), max: String(max) });
  if (value != null) input.value = String(value);
}

// "128 × 256 · refined, slower": the native size marked, larger ones say how they are made and that they cost more.
function sizeLabel(height) {
  const native = chosen.native[0];
  if (height === native) return `${sizeText(height)} · native`;
  if (height > native) return `${sizeText(height)} · ${$("refine").checked ? "refined" : "windowed"}, slower`;
  return sizeText(height);
}

function sizeOptions(maxHeight, selected) {
  const options = [];
  for (let h = SIZE_STEP; h <= maxHeight; h += SIZE_STEP) {
    const option = new Option(sizeText(h), `${h}x${2 * h}`);
    option.selected = h === selected;
    options.push(option);
  }
  return options;
}

// The size's labels and hint, and refine offered only above the native size (where it applies).
function syncSize() {
  for (const option of $("size").options) option.text = sizeLabel(Number(option.value.split("x")[0]));
  const height = chosenHeight();
  const [native, nativeWidth] = chosen.native;
  const nativeSize = `${native} × ${nativeWidth}`;
  const above = height > native;
  $("refine").disabled = !above;
  $("refine-hint").textContent = above ? "" : `Only above the native size (${nativeSize}).`;
  let hint = `${nativeSize} is this model's native size; larger sizes take longer.`;
  if (above) {
    const made = $("refine").checked
      ? `made at ${nativeSize}, upscaled 2× at a time and denoised again in ${nativeSize} windows`
      : `denoised in ${nativeSize} windows`;
    const times = Number(((height / native) ** 2).toFixed(1));
    hint = `${times}× the pixels of the native ${nativeSize}: ${made}; takes longer.`;
  } else if (height < native) hint = `Below the native ${nativeSize}: quicker, with less detail.`;
  $("size-hint").textContent = hint;
}

// The solver and steps the chosen quality samples with (the model's defaults for "model's default").
function sampling() {
  return chosen.presets[$("quality").value] ?? { scheduler: DEFAULT_SOLVER, steps: chosen.defaults.steps };
}

// A quality puts its steps in the form (still editable: given steps win over the preset's, as in the API) and
// names its solver on the solver select's "preset's" choice.
function applyQuality() {
  const { scheduler, steps } = sampling();
  $("steps").value = String(steps);
  $("scheduler").options[0].text = `${$("quality").value ? "the quality's" : "default"}: ${scheduler}`;
}

// Defaults and limits of the chosen model go into the inputs (a new model resets the numbers to its own); a chosen
// quality stays, with the new model's preset.
export function applyModel(name) {
  const model = models.find((m) => m.name === name);
  const defaults = { ...FALLBACK.defaults, ...(model && model.defaults) };
  const limits = { ...FALLBACK.limits, ...(model && model.limits) };
  chosen = { defaults, native: model?.native_size ?? [defaults.height, defaults.width], presets: model?.presets ?? {} };
  setNumber($("num-frames"), defaults.num_frames, limits.min_frames ?? MIN_FRAMES, limits.max_frames);
  setNumber($("steps"), defaults.steps, 1, limits.max_steps);
  setNumber($("fps"), defaults.fps, 1, limits.max_fps ?? 60);
  $("guidance").value = String(defaults.guidance_scale);
  $("size").replaceChildren(...sizeOptions(Math.max(limits.max_height, defaults.height), defaults.height));
  for (const option of $("quality").options) option.disabled = Boolean(option.value) && !chosen.presets[option.value];
  if ($("quality").selectedOptions[0].disabled) $("quality").value = "";
  applyQuality();
  syncSize();
  const about = [model && model.description, model && model.installed === false ? "weights not installed" : ""];
  $("model-about").textContent = about.filter(Boolean).join(" · ");
  $("model-about").dataset.maxFrames = String(limits.max_frames);
  describeLength();
}

export function fillModels(list) {
  models = list.map((m) => (typeof m === "string" ? { name: m } : m));
  $("base-model").replaceChildren(
    ...models.map((m) => {
      // the name only: a description in the option is cut off in a narrow select; it is shown below instead
      const option = new Option(m.available === false ? `${m.name} (unavailable)` : m.name, m.name);
      option.disabled = m.available === false;
      return option;
    }),
  );
  const usable = models.find((m) => m.available !== false);
  if (usable) $("base-model").value = usable.name;
  applyModel($("base-model").value);
}

// "16 frames at 8 fps: 2.0 s, interpolated to 24 fps, loops seamlessly"
export function describeLength() {
  const frames = Number($("num-frames").value);
  const fps = Number($("fps").value);
  const parts = [`${frames} frames at ${fps} fps: ${(frames / fps).toFixed(1)} s`];
  if ($("interpolate-to").value) parts.push(`interpolated to ${$("interpolate-to").value} fps`);
  if ($("loop").checked) parts.push("loops seamlessly");
  $("length-hint").textContent = frames && fps ? parts.join(", ") : "";
}

function selectSize(height, width) {
  const value = `${height}x${width}`;
  const select = $("size");
  if (![...select.options].some((o) => o.value === value)) select.add(new Option(sizeText(height), value));
  select.value = value;
}

// A job's settings back in the form, with the seed it used, so Generate makes it again (or a variation).
export function fillFromJob(job) {
  const request = job.request || {};
  if (models.some((m) => m.name === request.base_model)) {
    $("base-model").value = request.base_model;
    applyModel(request.base_model);
  }
  $("prompt").value = request.prompt || "";
  $("negative-prompt").value = request.negative_prompt || "";
  $("quality").value = chosen.presets[request.quality] ? request.quality : "";
  applyQuality();
  const numbers = { "num-frames": "num_frames", steps: "steps", fps: "fps", guidance: "guidance_scale" };
  for (const [id, key] of Object.entries(numbers)) if (request[key] != null) $(id).value = String(request[key]);
  // the stored request names the solver it used: "the quality's" when that is the one, so the form stays plain
  $("scheduler").value = request.scheduler && request.scheduler !== sampling().scheduler ? request.scheduler : "";
  $("refine").checked = request.refine !== false;
  if (request.height && request.width) selectSize(request.height, request.width);
  syncSize();
  if ($("scheduler").value || !($("refine").checked || $("refine").disabled)) $("advanced").open = true;
  const seed = job.seed ?? request.seed;
  $("seed").value = seed == null ? "" : String(seed);
  $("loop").checked = Boolean(request.loop);
  $("interpolate-to").value = request.interpolate_to ? String(request.interpolate_to) : "";
  // an uploaded motion is not the viewer's to reuse: the form asks for the file again
  document.querySelector(`input[name=motion][value=${request.flow_id ? "upload" : "none"}]`).checked = true;
  syncMotion();
  describeLength();
  showPromptError("");
  $("form-note").textContent =
    "Filled in from the job you are watching" + (request.flow_id ? "; its motion was an upload: choose it again." : ".");
}

function showPromptError(text) {
  $("prompt-error").textContent = text;
  $("prompt-error").hidden = !text;
  if (text) $("prompt").setAttribute("aria-invalid", "true");
  else $("prompt").removeAttribute("aria-invalid");
}

// False, with a message beside the field (scrolled to), when the prompt is blank: nothing is sent then.
export function checkPrompt() {
  if ($("prompt").value.trim()) return true;
  showPromptError(PROMPT_MISSING);
  $("prompt").focus({ preventScroll: true });
  $("prompt").closest("label").scrollIntoView({ block: "nearest" });
  return false;
}

export function motionChoice() {
  return document.querySelector("input[name=motion]:checked").value;
}

export function syncMotion() {
  $("upload-fields").hidden = motionChoice() !== "upload";
}

// The POST /generate body. loop, interpolate_to, quality, scheduler and refine go only when they differ from the
// API's defaults, so the request says only what was chosen.
export function readParams() {
  const [height, width] = $("size").value.split("x").map(Number);
  const params = {
    prompt: $("prompt").value,
    negative_prompt: $("negative-prompt").value,
    base_model: $("base-model").value,
    num_frames: Number($("num-frames").value),
    steps: Number($("steps").value),
    guidance_scale: Number($("guidance").value),
    fps: Number($("fps").value),
    height,
    width,
  };
  if ($("seed").value !== "") params.seed = Number($("seed").value);
  if ($("loop").checked) params.loop = true;
  if ($("interpolate-to").value) params.interpolate_to = Number($("interpolate-to").value);
  if ($("quality").value) params.quality = $("quality").value;
  if ($("scheduler").value) params.scheduler = $("scheduler").value;
  if (!$("refine").disabled && !$("refine").checked) params.refine = false;
  return params;
}

export function listenForm() {
  $("base-model").addEventListener("change", (e) => applyModel(e.target.value));
  for (const id of ["num-frames", "fps", "interpolate-to", "loop"]) $(id).addEventListener("input", describeLength);
  $("quality").addEventListener("change", applyQuality);
  for (const id of ["size", "refine"]) $(id).addEventListener("change", syncSize);
  for (const radio of document.querySelectorAll("input[name=motion]")) radio.addEventListener("change", syncMotion);
  // the browser's own bubble for the required prompt gives way to the inline message
  $("prompt").addEventListener("invalid", (e) => {
    e.preventDefault();
    checkPrompt();
  });
  $("prompt").addEventListener("input", () => $("prompt").value.trim() && showPromptError(""));
  syncMotion();
}
