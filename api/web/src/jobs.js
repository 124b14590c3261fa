// The key's jobs: a gallery of finished videos (their posters) and a dated list of every job.
import { duration, timeElement } from "./format.js";

const $ = (id) => document.getElementById(id);

const promptOf = (job) => (job.request && job.request.prompt) || job.prompt || job.id;
const line = (className, ...content) => {
  const span = Object.assign(document.createElement("span"), { className });
  span.append(...content);
  return span;
};

function historyItem(job, open) {
  const li = document.createElement("li");
  li.dataset.id = job.id;
  const link = Object.assign(document.createElement("a"), { href: `#job=${job.id}`, className: "prompt" });
  link.textContent = promptOf(job);
  const when = Object.assign(timeElement(job.created_at), { className: "muted" });
  li.append(line(`state ${job.state}`, job.state), link, when);
  li.addEventListener("click", (e) => {
    e.preventDefault();
    open(job.id);
  });
  return li;
}

function galleryItem(job, open) {
  const li = document.createElement("li");
  li.dataset.id = job.id;
  const link = Object.assign(document.createElement("a"), { href: `#job=${job.id}`, title: promptOf(job) });
  const poster = Object.assign(document.createElement("img"), {
    src: job.outputs.poster_url,
    alt: promptOf(job),
    loading: "lazy",
  });
  // what it is (size, frames) and when it was made, in how long
  const { height, width, num_frames: frames } = job.request || {};
  const took = job.timings?.total_s != null ? ` · took ${duration(job.timings.total_s)}` : "";
  link.append(
    poster,
    line("title", promptOf(job)),
    line("meta", `${height} × ${width} · ${frames} frames`),
    line("meta", timeElement(job.finished_at ?? job.created_at), took),
  );
  link.addEventListener("click", (e) => {
    e.preventDefault();
    open(job.id);
  });
  li.append(link);
  return li;
}

export function showJobs(jobs, open) {
  $("history").replaceChildren(...jobs.map((job) => historyItem(job, open)));
  const finished = jobs.filter((job) => job.state === "succeeded" && job.outputs && job.outputs.poster_url);
  $("gallery").replaceChildren(...finished.map((job) => galleryItem(job, open)));
  $("gallery-empty").hidden = finished.length > 0;
}

export function showJobsError(message) {
  $("history").replaceChildren(Object.assign(document.createElement("li"), { textContent: message }));
}
