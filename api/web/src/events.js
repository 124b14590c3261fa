// Following one job live: its Server-Sent Events stream (GET /jobs/{id}/events), resumed with Last-Event-ID after
// a network loss, or polling GET /jobs/{id} every 2 s where the server has no stream route (404/405).
import { api } from "./api.js";

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const POLL_MS = 2000;
const MAX_RETRY_MS = 10_000;
const FATAL = new Set([401, 403]); // retrying cannot help; the job view says why

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The text/event-stream wire format: "field: value" lines, a blank line ends a message, ":" lines are comments.
export async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { event: "", data: [] };
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // an unfinished line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        if (message.data.length) yield { id, event: message.event || "message", data: message.data.join("\n") };
        message = { event: "", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") message.data.push(val);
      else if (field === "event") message.event = val;
      else if (field === "id") id = val;
    }
  }
}

// show: {job(job), event(type, data), error(err), mode(text)}. Returns a function that stops watching.
export function watchJob(id, show) {
  const controller = new AbortController();
  let stopped = false;
  let pollTimer = null;
  const stop = () => {
    stopped = true;
    controller.abort();
    clearTimeout(pollTimer);
  };

  async function poll() {
    if (stopped) return;
    try {
      const job = await api.job(id);
      show.job(job);
      if (TERMINAL.has(job.state)) return stop();
    } catch (err) {
      show.error(err);
      if (err.status === 404 || FATAL.has(err.status)) return stop();
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  async function stream() {
    let lastEventId = null;
    let failures = 0;
    while (!stopped) {
      try {
        const response = await api.events(id, lastEventId, controller.signal);
        if (response.status === 404 || response.status === 405) {
          show.mode("polling");
          return poll();
        }
        if (FATAL.has(response.status)) {
          show.error(new Error(`cannot follow the job (HTTP ${response.status}): check the API key`));
          return stop();
        }
        if (!response.ok) throw new Error(`the event stream answered HTTP ${response.status}`);
        show.mode("live");
        for await (const message of sseMessages(response.body)) {
          failures = 0;
          lastEventId = message.id ?? lastEventId;
          const data = JSON.parse(message.data);
          show.event(message.event, data);
          if (TERMINAL.has(message.event)) return stop();
        }
        // closed without a final event (a server restart, a proxy timeout): resume where it stopped
      } catch (err) {
        if (stopped) return;
        failures += 1;
        show.mode(`reconnecting (${err.message})`);
      }
      await wait(Math.min(500 * 2 ** failures, MAX_RETRY_MS));
    }
  }

  stream();
  return stop;
}
