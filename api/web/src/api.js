// The HTTP API as the page uses it. The key lives in localStorage; without one (embedded default, auth off)
// requests go unauthenticated.
const KEY_STORAGE = "dvd360.apiKey";

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE) || "",
  set: (key) => (key ? localStorage.setItem(KEY_STORAGE, key) : localStorage.removeItem(KEY_STORAGE)),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// FastAPI errors come as {detail: "text"} or {detail: [{loc, msg}, ...]}: make one readable line each.
function describe(body, status) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("\n");
  if (typeof detail === "string") return detail;
  return `request failed (HTTP ${status})`;
}

export function authHeaders() {
  return apiKey.get() ? { "X-API-Key": apiKey.get() } : {};
}

async function request(method, path, body) {
  const headers = authHeaders();
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  const parsed = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, describe(parsed, response.status));
  return parsed;
}

// fetch() reports no upload progress; XMLHttpRequest does, so uploads go through it.
function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, describe(xhr.response, xhr.status)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload failed: the network connection was lost")));
    xhr.send(form);
  });
}

const listOf = (body, key) => (Array.isArray(body) ? body : body[key] || body.items || []);
const jobPath = (id) => `/jobs/${encodeURIComponent(id)}`;

export const api = {
  models: async () => listOf(await request("GET", "/models"), "models"),
  jobs: async () => listOf(await request("GET", "/jobs?limit=24"), "jobs"),
  job: (id) => request("GET", jobPath(id)),
  cancel: (id) => request("POST", `${jobPath(id)}/cancel`),
  generate: (params) => request("POST", "/generate", params),
  uploadFlow: (file, kind, name, onProgress = () => {}) => {
    const form = new FormData();
    form.append("file", file, name || file.name);
    form.append("kind", kind);
    return upload("/flows", form, onProgress);
  },
  // The job's Server-Sent Events, as a fetch Response (fetch, not EventSource, so the key and Last-Event-ID go along).
  events: (id, lastEventId, signal) => {
    const headers = { ...authHeaders(), Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    return fetch(`${jobPath(id)}/events`, { headers, signal, cache: "no-store" });
  },
};
