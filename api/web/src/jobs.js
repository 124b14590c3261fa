// The key's jobs: a gallery of finished videos (their posters) and a dated list of every job.
const $ = (id) => document.getElementById(id);

const promptOf = (job) => (job.request && job.request.prompt) || job.prompt || job.id;

// The API's times are UNIX seconds; Date wants milliseconds.
function timeElement(seconds) {
  const when = new Date(seconds * 1000);
  return Object.assign(document.createElement("time"), {
    dateTime: when.toISOString(),
    textContent: when.toLocaleString(),
    className: "muted",
  });
}

function historyItem(job, open) {
  const li = document.createElement("li");
  li.dataset.id = job.id;
  const link = Object.assign(document.createElement("a"), { href: `#job=${job.id}`, className: "prompt" });
  link.textContent = promptOf(job);
  const state = Object.assign(document.createElement("span"), { className: `state ${job.state}` });
  state.textContent = job.state;
  li.append(state, link, timeElement(job.created_at));
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
  const caption = Object.assign(document.createElement("span"), { textContent: promptOf(job) });
  link.append(poster, caption);
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
