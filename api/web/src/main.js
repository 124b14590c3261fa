// The page: a form that creates jobs, a live view of the current job, the 360° viewer and the job history.
import { api, apiKey } from "./api.js";
import { PanoramaViewer } from "./viewer.js";
import "./style.css";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const POLL_MS = 700;

const viewer = new PanoramaViewer($("viewer"));
window.dvd360Viewer = viewer; // for people poking around in the console, and the browser tests
let current = null; // the job on screen
let pollTimer = null;

function showError(message) {
  $("form-error").textContent = message || "";
}

function jobSummary(job) {
  const p = job.progress || {};
  if (job.state === "queued") return `queued${job.queue_position != null ? ` (position ${job.queue_position})` : ""}`;
  if (job.state === "running") return `running: step ${p.step || 0} of ${p.total || "?"}`;
  if (job.state === "failed") return `failed: ${job.error || "unknown reason"}`;
  if (job.state === "succeeded") return `done (seed ${job.seed ?? job.request?.seed ?? "?"})`;
  return job.state;
}

function percent(job) {
  if (job.state === "succeeded") return 100;
  return Math.round((job.progress && job.progress.percent) || 0);
}

function showJob(job) {
  const changed = !current || current.id !== job.id || current.state !== job.state;
  current = job;
  $("current-job").textContent = job.id;
  $("progress-bar").style.width = `${percent(job)}%`;
  $("progress-bar").dataset.percent = String(percent(job));
  $("job-status").textContent = jobSummary(job);
  $("job-status").dataset.state = job.state;
  $("cancel").disabled = TERMINAL.has(job.state);
  const video = job.outputs && job.outputs.video_url;
  if (job.state === "succeeded" && video && changed) {
    $("download").href = video;
    $("download").hidden = false;
    $("play").disabled = false;
    viewer.load(video).catch(() => {}); // autoplay may be refused; the Play button still works
  } else if (job.state !== "succeeded") {
    $("download").hidden = true;
  }
}

async function poll(id) {
  clearTimeout(pollTimer);
  try {
    const job = await api.job(id);
    showJob(job);
    if (!TERMINAL.has(job.state)) pollTimer = setTimeout(() => poll(id), POLL_MS);
    else refreshHistory();
  } catch (err) {
    $("job-status").textContent = `cannot read job: ${err.message}`;
    pollTimer = setTimeout(() => poll(id), POLL_MS * 4);
  }
}

async function motionFlowId() {
  const motion = document.querySelector("input[name=motion]:checked").value;
  if (motion === "none") return null;
  if (motion === "example") {
    const blob = await (await fetch("/static/example-flow.mp4")).blob();
    return (await api.uploadFlow(blob, "flow_video", "example-flow.mp4")).id;
  }
  const file = $("flow-file").files[0];
  if (!file) throw new Error("choose a motion file to upload, or pick another motion option");
  return (await api.uploadFlow(file, $("flow-kind").value, file.name)).id;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  $("submit").disabled = true;
  try {
    const [height, width] = $("size").value.split("x").map(Number);
    const params = {
      prompt: $("prompt").value,
      negative_prompt: $("negative-prompt").value,
      base_model: $("base-model").value,
      num_frames: Number($("num-frames").value),
      steps: Number($("steps").value),
      guidance_scale: Number($("guidance").value),
      height,
      width,
    };
    if ($("seed").value !== "") params.seed = Number($("seed").value);
    const flowId = await motionFlowId();
    if (flowId) params.flow_id = flowId;
    const job = await api.generate(params);
    showJob(job);
    poll(job.id);
    refreshHistory();
  } catch (err) {
    showError(err.message);
  } finally {
    $("submit").disabled = false;
  }
}

async function refreshHistory() {
  try {
    const jobs = await api.jobs();
    $("history").replaceChildren(
      ...jobs.map((job) => {
        const li = document.createElement("li");
        li.dataset.id = job.id;
        const state = Object.assign(document.createElement("span"), { className: "state", textContent: job.state });
        const prompt = Object.assign(document.createElement("span"), {
          className: "prompt",
          textContent: (job.request && job.request.prompt) || job.prompt || job.id,
        });
        const when = Object.assign(document.createElement("span"), {
          className: "muted",
          textContent: new Date(job.created_at).toLocaleString(),
        });
        li.append(state, prompt, when);
        li.addEventListener("click", () => poll(job.id));
        return li;
      }),
    );
  } catch (err) {
    $("history").replaceChildren(Object.assign(document.createElement("li"), { textContent: err.message }));
  }
}

async function loadModels() {
  try {
    const models = await api.models();
    $("base-model").replaceChildren(
      ...models.map((m) => {
        const name = typeof m === "string" ? m : m.name;
        const option = new Option(m.description ? `${name} (${m.description})` : name, name);
        option.disabled = m.available === false;
        return option;
      }),
    );
  } catch (err) {
    showError(`cannot list base models: ${err.message}`);
  }
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey.set($("api-key").value.trim());
  loadModels();
  refreshHistory();
});
$("generate-form").addEventListener("submit", submit);
$("cancel").addEventListener("click", async () => {
  if (!current) return;
  try {
    showJob(await api.cancel(current.id));
    poll(current.id);
  } catch (err) {
    $("job-status").textContent = `cannot cancel: ${err.message}`;
  }
});
$("play").addEventListener("click", () => viewer.togglePlay());
viewer.video.addEventListener("play", () => ($("play").textContent = "Pause"));
viewer.video.addEventListener("pause", () => ($("play").textContent = "Play"));
$("loop").addEventListener("change", (e) => (viewer.loop = e.target.checked));
$("flat").addEventListener("change", (e) => (viewer.flat = e.target.checked));
$("refresh").addEventListener("click", refreshHistory);

$("api-key").value = apiKey.get();
loadModels();
refreshHistory();
