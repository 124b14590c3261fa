// Times as the page writes them: the API's are UNIX seconds (Date wants milliseconds) and durations in seconds.

export function duration(seconds) {
  if (seconds == null) return "";
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

export function timeElement(seconds) {
  const when = new Date(seconds * 1000);
  return Object.assign(document.createElement("time"), {
    dateTime: when.toISOString(),
    textContent: when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }),
  });
}

// A short time kept to two figures: 0.042 s, 0.21 s, 2.4 s, 31 s
export function seconds(value) {
  return `${value < 10 ? Number(value.toPrecision(2)) : Math.round(value)} s`;
}
