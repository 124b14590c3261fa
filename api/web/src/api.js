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

async function request(method, path, body) {
  const headers = {};
  if (apiKey.get()) headers["X-API-Key"] = apiKey.get();
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  const parsed = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, describe(parsed, response.status));
  return parsed;
}

const listOf = (body, key) => (Array.isArray(body) ? body : body[key] || body.items || []);

export const api = {
  models: async () => listOf(await request("GET", "/models"), "models"),
  jobs: async () => listOf(await request("GET", "/jobs?limit=20"), "jobs"),
  job: (id) => request("GET", `/jobs/${encodeURIComponent(id)}`),
  cancel: (id) => request("POST", `/jobs/${encodeURIComponent(id)}/cancel`),
  generate: (params) => request("POST", "/generate", params),
  uploadFlow: (file, kind, name) => {
    const form = new FormData();
    form.append("file", file, name || file.name);
    form.append("kind", kind);
    return request("POST", "/flows", form);
  },
};
