// The page: the Create form, the live view of the current job in the 360° viewer, the gallery and the job list.
import { api, apiKey } from "./api.js";
import { TERMINAL, watchJob } from "./events.js";
import { fillModels, listenForm, motionChoice, readParams } from "./form.js";
import { showJobs, showJobsError } from "./jobs.js";
import { PanoramaViewer } from "./viewer.js";
import "./style.css";

const $ = (id) => document.getElementById(id);
const CURRENT_STORAGE = "dvd360.currentJob";
const PHONE = matchMedia("(max-width: 760px)");

const viewer = new PanoramaViewer($("viewer"));
window.dvd360Viewer = viewer; // for people poking around in the console, and the browser tests
let current = null; // the job on screen
let stopWatching = () => {};

function showError(message) {
  $("form-error").textContent = message || "";
}

function setStatus(state, text) {
  if (state) $("job-status").dataset.state = state;
  $("job-status").textContent = text;
}

function setPercent(value) {
  const percent = Math.max(0, Math.min(100, Math.round(value || 0)));
  $("progress-bar").style.width = `${percent}%`;
  $("progress-bar").dataset.percent = String(percent);
}

function duration(seconds) {
  if (seconds == null) return "";
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// {step, total, percent, eta_s} from a progress event or the job's own "progress"
function showProgress(progress) {
  const { step = 0, total, percent, eta_s: eta } = progress || {};
  setPercent(percent ?? (total ? (100 * step) / total : 0));
  const left = eta != null ? ` · about ${duration(eta)} left` : "";
  setStatus("running", `running: step ${step} of ${total || "?"}${left}`);
}

function showQueued(position) {
  setPercent(0);
  setStatus("queued", position != null ? `queued: number ${position} in line` : "queued");
}

function showEnd(job) {
  const reasons = { failed: job.error || "unknown reason", canceled: job.error_type === "deadline" ? "deadline passed" : "" };
  if (job.state === "succeeded") {
    const took = job.timings && job.timings.total_s != null ? ` in ${duration(job.timings.total_s)}` : "";
    setStatus("succeeded", `done${took} (seed ${job.seed ?? job.request?.seed ?? "?"})`);
  } else setStatus(job.state, reasons[job.state] ? `${job.state}: ${reasons[job.state]}` : job.state);
  setPercent(job.state === "succeeded" ? 100 : Number($("progress-bar").dataset.percent || 0));
  const outputs = job.outputs || {};
  if (job.state !== "succeeded" || !outputs.video_url) return;
  $("download").href = outputs.video_url;
  $("download").hidden = false;
  $("play").disabled = false;
  // views_url is one picture of four perspective views side by side; each tile shows a quarter of it. Only
  // quotes and backslashes are escaped for CSS: a presigned S3 link is already percent-encoded.
  if (outputs.views_url) {
    const cssUrl = outputs.views_url.replace(/["\\\n]/g, encodeURIComponent);
    $("views").style.setProperty("--views-url", `url("${cssUrl}")`);
  }
  $("views").hidden = !outputs.views_url;
  viewer.load(outputs.video_url).catch(() => {}); // autoplay may be refused; the Play button still works
}

function showJob(job) {
  const first = !current || current.id !== job.id;
  const wasTerminal = current && current.id === job.id && TERMINAL.has(current.state);
  current = job;
  if (first) {
    $("current-job").textContent = job.id;
    $("current-prompt").textContent = job.request?.prompt || "";
  }
  $("cancel").disabled = TERMINAL.has(job.state);
  if (job.state === "queued") showQueued(job.queue_position);
  else if (job.state === "running") showProgress(job.progress);
  else if (TERMINAL.has(job.state) && !wasTerminal) showEnd(job);
}

const onEvent = {
  queued: (data) => showQueued(data.queue_position),
  running: () => setStatus("running", "running: the first step is under way"),
  progress: (data) => showProgress(data),
  preview: (data) => viewer.showImage(data.image).catch(() => {}), // a broken preview is no reason to stop
  succeeded: (data) => finish(data.job),
  failed: (data) => finish(data.job && { ...data.job, error: data.error, error_type: data.error_type }),
  canceled: (data) => finish(data.job && { ...data.job, error_type: data.error_type }),
};

// A final event without the job (it expired meanwhile) still ends the view, from GET /jobs/{id}.
async function finish(job) {
  try {
    showJob(job || (await api.job(current.id)));
  } catch (err) {
    setStatus(null, `the job ended, but cannot be read: ${err.message}`);
  }
  refreshJobs();
}

function follow(id) {
  stopWatching = watchJob(id, {
    job: (job) => (TERMINAL.has(job.state) ? finish(job) : showJob(job)),
    event: (type, data) => onEvent[type]?.(data),
    error: (err) => setStatus(null, `cannot read the job: ${err.message}`),
    mode: (mode) => ($("stream-mode").textContent = mode),
  });
}

// Opens a job: remembered across reloads (localStorage) and in the address (#job=<id>, the share link).
async function openJob(id) {
  stopWatching();
  if (!current || current.id !== id) {
    current = null;
    viewer.clear();
    setPercent(0);
    $("views").hidden = $("download").hidden = $("share-info").hidden = true;
    $("play").disabled = true;
  }
  localStorage.setItem(CURRENT_STORAGE, id);
  history.replaceState(null, "", `#job=${encodeURIComponent(id)}`);
  $("share").hidden = false;
  try {
    const job = await api.job(id);
    showJob(job);
    if (!TERMINAL.has(job.state)) follow(id);
  } catch (err) {
    if (err.status === 404) localStorage.removeItem(CURRENT_STORAGE);
    $("current-job").textContent = id;
    setStatus("unknown", err.status === 404 ? "no such job: it expired, or belongs to another API key" : err.message);
  }
}

function jobFromAddress() {
  const match = /(?:^#|&)job=([^&]+)/.exec(location.hash);
  return match && decodeURIComponent(match[1]);
}

async function motionFlowId() {
  const motion = motionChoice();
  if (motion === "none") return null;
  let file = $("flow-file").files[0];
  let kind = $("flow-kind").value;
  if (motion === "example") {
    file = new File([await (await fetch("/static/example-flow.mp4")).blob()], "example-flow.mp4");
    kind = "flow_video";
  }
  if (!file) throw new Error("choose a motion file to upload, or pick another motion option");
  $("upload-progress").hidden = false;
  const report = (fraction) => {
    $("upload-bar").value = fraction;
    $("upload-text").textContent = `uploading ${file.name}: ${Math.round(fraction * 100)}%`;
  };
  report(0);
  try {
    return (await api.uploadFlow(file, kind, file.name, report)).id;
  } finally {
    $("upload-progress").hidden = true;
  }
}

async function submit(event) {
  event.preventDefault();
  showError("");
  $("submit").disabled = true;
  $("submit").textContent = "Sending…";
  try {
    const params = readParams();
    const flowId = await motionFlowId();
    if (flowId) params.flow_id = flowId;
    const job = await api.generate(params);
    await openJob(job.id);
    refreshJobs();
    if (PHONE.matches) $("watch").scrollIntoView({ behavior: "smooth" });
  } catch (err) {
    showError(err.message);
  } finally {
    $("submit").disabled = false;
    $("submit").textContent = "Generate";
  }
}

async function refreshJobs() {
  try {
    showJobs(await api.jobs(), openJob);
  } catch (err) {
    showJobsError(err.message);
  }
}

async function loadModels() {
  try {
    fillModels(await api.models());
  } catch (err) {
    showError(`cannot list base models: ${err.message}`);
  }
}

async function share() {
  const url = `${location.origin}${location.pathname}#job=${encodeURIComponent(current ? current.id : jobFromAddress())}`;
  $("share-url").value = url;
  $("share-info").hidden = false;
  $("share-url").select();
  await navigator.clipboard?.writeText(url).catch(() => {}); // not offered on plain http: the link is selected
}

async function toggleOrientation() {
  try {
    if (viewer.orientation) viewer.disableOrientation();
    else await viewer.enableOrientation();
    $("orientation").textContent = viewer.orientation ? "Stop turning" : "Look by turning the phone";
  } catch (err) {
    setStatus(null, err.message);
  }
}

function listen() {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey.set($("api-key").value.trim());
    loadModels();
    refreshJobs();
  });
  $("generate-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", async () => {
    if (!current) return;
    try {
      showJob(await api.cancel(current.id));
    } catch (err) {
      setStatus(null, `cannot cancel: ${err.message}`);
    }
  });
  $("play").addEventListener("click", () => viewer.togglePlay());
  viewer.video.addEventListener("play", () => ($("play").textContent = "Pause"));
  viewer.video.addEventListener("pause", () => ($("play").textContent = "Play"));
  $("repeat").addEventListener("change", (e) => (viewer.loop = e.target.checked));
  $("flat").addEventListener("change", (e) => (viewer.flat = e.target.checked));
  $("refresh").addEventListener("click", refreshJobs);
  $("share").addEventListener("click", share);
  $("orientation").addEventListener("click", toggleOrientation);
  $("enter-vr").addEventListener("click", () => viewer.enterVR().catch((err) => setStatus(null, err.message)));
  for (const tile of document.querySelectorAll(".view-tile")) {
    tile.addEventListener("click", () => viewer.lookAt(Number(tile.dataset.yaw), 0));
  }
  window.addEventListener("hashchange", () => jobFromAddress() && openJob(jobFromAddress()));
  listenForm();
}

listen();
$("api-key").value = apiKey.get();
$("orientation").hidden = !(window.DeviceOrientationEvent && matchMedia("(pointer: coarse)").matches);
PanoramaViewer.vrSupported().then((yes) => ($("enter-vr").hidden = !yes));
loadModels();
refreshJobs();
const remembered = jobFromAddress() || localStorage.getItem(CURRENT_STORAGE);
if (remembered) openJob(remembered);
