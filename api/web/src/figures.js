// A finished job's quality figures (docs/quality-figures.md) and its mean step time, shown under its status.
import { seconds } from "./format.js";

const ABOUT_ONE = "about 1: the flaw does not show";
const HOW = "each compares the pixel differences where a flaw would be with those at like places elsewhere";
// [field, name, what it compares]; loop_closure only for loops (any other video may end unlike its start)
const FIGURES = [
  ["seam_ratio", "seam", "the left-right seam against the other column boundaries"],
  ["window_seam_ratio", "window seams", "steps into frames where temporal context windows meet, against the others"],
  ["spatial_window_seam_ratio", "spatial window seams", "steps across spatial window borders, against lines beside"],
  ["loop_closure", "loop closure", "the last frame to the first, against the median step between frames"],
];

const span = (className, textContent, title) =>
  Object.assign(document.createElement("span"), { className, textContent, title });

// Fills `element` with the job's figures ("Quality (…): seam 1.02 · loop closure 0.98 · 0.21 s per step"), or
// hides it when the job has none.
export function showFigures(element, job) {
  const figures = job?.quality_figures || {};
  const shown = FIGURES.filter(([key]) => figures[key] != null && (key !== "loop_closure" || job.request?.loop));
  const parts = shown.map(([key, name, about]) =>
    span("figure", `${name} ${figures[key].toFixed(2)}`, `${about}; ${ABOUT_ONE}`),
  );
  const step = job?.timings?.step_s;
  if (step != null) parts.push(span("figure", `${seconds(step)} per step`, "the mean time of one denoising step"));
  const lead = shown.length ? [span("muted", `Quality (${ABOUT_ONE}):`, HOW), " "] : [];
  element.replaceChildren(...lead, ...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
  element.hidden = !parts.length;
}
