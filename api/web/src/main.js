// The page: the Create form, the live view of the current job in the 360° viewer, the gallery and the job list.
import { api, apiKey } from "./api.js";
import { TERMINAL, watchJob } from "./events.js";
import { showFigures } from "./figures.js";
import { checkPrompt, fillFromJob, fillModels, listenForm, motionChoice, readParams } from "./form.js";
import { duration } from "./format.js";
import { showJobs, showJobsError } from "./jobs.js";
import { PanoramaViewer } from "./viewer.js";
import "./style.css";

const $ = (id) => document.getElementById(id);
const CURRENT_STORAGE = "dvd360.currentJob";
const FROM_ADDRESS = { fill: true, reveal: "auto" }; // a shared link: its settings in the form, the player in view

const viewer = new PanoramaViewer($("viewer"));
window.dvd360Viewer = viewer; // for people poking around in the console, and the browser tests
let current = null; // the job on screen
let stopWatching = () => {};
let polling = false; // the current job is followed by polling: no live previews come
let modelsLoaded; // GET /models, read into the form: a shared job's settings wait for its model's limits

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

// The badge beside the job: "live", "polling" or "reconnecting" while it is followed, gone when it ends.
function setMode(mode) {
  $("stream-mode").textContent = mode;
  $("stream-mode").hidden = !mode;
  polling = mode === "polling";
}

// What the empty viewer says until the first preview; a server without the event stream sends none.
const waitingNote = () =>
  polling ? "Waiting for the video: no live previews without the event stream" : "Waiting for the first preview…";

// The player and its controls in the window: on a phone the form comes first, and the gallery lies below.
function revealPlayer(behavior) {
  const box = $("player").getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) $("watch").scrollIntoView({ behavior, block: "start" });
}

// {step, total, percent, eta_s} from a progress event or the job's own "progress"
function showProgress(progress) {
  const { step = 0, total, percent, eta_s: eta } = progress || {};
  setPercent(percent ?? (total ? (100 * step) / total : 0));
  const left = eta != null ? ` · about ${duration(eta)} left` : "";
  setStatus("running", `running: step ${step} of ${total || "?"}${left}`);
  viewer.message = waitingNote();
}

function showQueued(position) {
  setPercent(0);
  setStatus("queued", position != null ? `queued: number ${position} in line` : "queued");
  viewer.message = waitingNote();
}

// Why a job that ended without a video left the viewer empty.
function endNote(job) {
  if (job.state === "failed") return "Failed: no video was made";
  const { step, total } = job.progress || {};
  return step ? `Canceled at step ${step} of ${total}: no video was made` : "Canceled before it started";
}

function showEnd(job) {
  const reasons = { failed: job.error || "unknown reason", canceled: job.error_type === "deadline" ? "deadline passed" : "" };
  if (job.state === "succeeded") {
    const took = job.timings && job.timings.total_s != null ? ` in ${duration(job.timings.total_s)}` : "";
    setStatus("succeeded", `done${took} (seed ${job.seed ?? job.request?.seed ?? "?"})`);
  } else setStatus(job.state, reasons[job.state] ? `${job.state}: ${reasons[job.state]}` : job.state);
  setPercent(job.state === "succeeded" ? 100 : Number($("progress-bar").dataset.percent || 0));
  setMode("");
  showFigures($("job-figures"), job.state === "succeeded" ? job : null);
  const outputs = job.outputs || {};
  if (job.state !== "succeeded" || !outputs.video_url) {
    viewer.clear(); // an unfinished preview is no result
    viewer.message = endNote(job);
    return;
  }
  viewer.message = "Loading the video…";
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
  const wasTerminal = !first && TERMINAL.has(current.state);
  // An answer read before the job ended (the cancel's "running", racing the stream's final event) is stale.
  if (wasTerminal && !TERMINAL.has(job.state)) return;
  current = job;
  if (first) {
    $("current-job").textContent = job.id;
    $("current-prompt").textContent = $("current-prompt").title = job.request?.prompt || "";
  }
  $("cancel").disabled = TERMINAL.has(job.state);
  if (TERMINAL.has(job.state)) stopWatching(); // e.g. canceled while queued: the cancel's answer says so first
  if (job.state === "queued") showQueued(job.queue_position);
  else if (job.state === "running") showProgress(job.progress);
  else if (TERMINAL.has(job.state) && !wasTerminal) showEnd(job);
}

const onEvent = {
  queued: (data) => showQueued(data.queue_position),
  running: () => {
    setStatus("running", "running: the first step is under way");
    viewer.message = waitingNote();
  },
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
    mode: (mode) => {
      setMode(mode);
      if (current && !TERMINAL.has(current.state)) viewer.message = waitingNote();
    },
  });
}

// Opens a job: remembered across reloads (localStorage) and in the address (#job=<id>, the share link).
// fill: its settings go into the form (opened from the address); reveal: scroll the player into view this way.
async function openJob(id, { fill = false, reveal = null } = {}) {
  stopWatching();
  if (!current || current.id !== id) {
    current = null;
    viewer.clear();
    viewer.message = "Opening the job…";
    setMode("");
    setPercent(0);
    $("views").hidden = $("download").hidden = $("share-info").hidden = $("job-figures").hidden = true;
    $("play").disabled = true;
  }
  localStorage.setItem(CURRENT_STORAGE, id);
  history.replaceState(null, "", `#job=${encodeURIComponent(id)}`);
  $("share").hidden = false;
  try {
    const job = await api.job(id);
    showJob(job);
    if (!TERMINAL.has(job.state)) follow(id);
    if (fill) {
      await modelsLoaded; // the model's limits first, then the job's numbers
      fillFromJob(job);
    }
  } catch (err) {
    if (err.status === 404) localStorage.removeItem(CURRENT_STORAGE);
    $("current-job").textContent = id;
    viewer.message = "";
    setStatus("unknown", err.status === 404 ? "no such job: it expired, or belongs to another API key" : err.message);
  }
  if (reveal) revealPlayer(reveal);
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
  if (!checkPrompt()) return;
  showError("");
  $("form-note").textContent = "";
  $("submit").disabled = true;
  $("submit").textContent = "Sending…";
  try {
    const params = readParams();
    const flowId = await motionFlowId();
    if (flowId) params.flow_id = flowId;
    const job = await api.generate(params);
    await openJob(job.id, { reveal: "smooth" });
    refreshJobs();
  } catch (err) {
    showError(err.message);
  } finally {
    $("submit").disabled = false;
    $("submit").textContent = "Generate";
  }
}

async function refreshJobs() {
  try {
    showJobs(await api.jobs(), (id) => openJob(id, { reveal: "smooth" }));
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
    modelsLoaded = loadModels();
    refreshJobs();
  });
  $("generate-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", async () => {
    if (!current) return;
    const id = current.id;
    try {
      const job = await api.cancel(id);
      if (current?.id === id) showJob(job); // unless another job was opened meanwhile
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
  window.addEventListener("hashchange", () => jobFromAddress() && openJob(jobFromAddress(), FROM_ADDRESS));
  listenForm();
}

listen();
$("api-key").value = apiKey.get();
$("orientation").hidden = !(window.DeviceOrientationEvent && matchMedia("(pointer: coarse)").matches);
PanoramaViewer.vrSupported().then((yes) => ($("enter-vr").hidden = !yes));
modelsLoaded = loadModels();
refreshJobs();
viewer.message = "No video yet: write a prompt and press Generate";
if (jobFromAddress()) openJob(jobFromAddress(), FROM_ADDRESS);
else if (localStorage.getItem(CURRENT_STORAGE)) openJob(localStorage.getItem(CURRENT_STORAGE));
