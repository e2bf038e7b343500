// The weir web UI: polls the REST API every second and draws the job list, the
// selected job's graph (boxes and arrows with records/s, backpressure and
// watermark lag), its checkpoint history (duration bars, size line) and its
// savepoints. Everything user-supplied is set as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const params = new URLSearchParams(location.hash.slice(1));
let token = params.get("token") || localStorage.getItem("weir-token") || "";
let selected = params.get("job") || new URLSearchParams(location.search).get("job");
let busy = false;

const $ = (id) => document.getElementById(id);

async function api(method, path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { method, headers });
  if (response.status === 401) {
    $("login").style.display = "block";
    throw new Error("this server requires an access token");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function svg(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, attrs) {
  const node = svg("text", Object.assign({ x, y }, attrs || {}), parent);
  node.textContent = content;
  return node;
}

function count(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(1) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(Math.round(n));
}

function bytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (Math.abs(ms) >= 86400000) return Math.round(ms / 86400000) + " d";
  if (Math.abs(ms) >= 3600000) return (ms / 3600000).toFixed(1) + " h";
  if (Math.abs(ms) >= 60000) return (ms / 60000).toFixed(1) + " min";
  if (Math.abs(ms) >= 1000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms) + " ms";
}

function when(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

function renderJobs(jobs) {
  const body = $("jobs");
  body.replaceChildren();
  $("no-jobs").hidden = jobs.length > 0;
  if (!selected && jobs.length) {
    const running = jobs.filter((j) => j.status === "running");
    selected = (running[running.length - 1] || jobs[jobs.length - 1]).id;
  }
  for (const job of jobs) {
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    if (job.id === selected) row.className = "selected";
    const cell = document.createElement("td");
    const name = document.createElement("div");
    name.textContent = job.name;
    const id = document.createElement("div");
    id.className = "id";
    id.textContent = job.id;
    cell.append(name, id);
    const statusCell = document.createElement("td");
    const status = document.createElement("span");
    status.className = "status " + job.status;
    status.textContent = job.status;
    statusCell.appendChild(status);
    row.append(cell, statusCell);
    row.addEventListener("click", () => {
      selected = job.id;
      message("");
      refresh();
    });
    body.appendChild(row);
  }
}

// Columns by longest path from a source; rows in order of appearance.
function layout(graph) {
  const depth = new Map(graph.vertices.map((v) => [v.id, 0]));
  for (let pass = 0; pass < graph.vertices.length; pass++) {
    for (const e of graph.edges) {
      depth.set(e.to, Math.max(depth.get(e.to), depth.get(e.from) + 1));
    }
  }
  const columns = [];
  for (const v of graph.vertices) {
    const d = depth.get(v.id);
    (columns[d] = columns[d] || []).push(v);
  }
  const W = 148, H = 84, GX = 36, GY = 22, PAD = 12;
  const place = new Map();
  const tallest = Math.max(...columns.map((c) => (c ? c.length : 0)), 1);
  columns.forEach((column, c) => {
    const offset = ((tallest - column.length) * (H + GY)) / 2;
    column.forEach((v, r) => place.set(v.id, { x: PAD + c * (W + GX), y: PAD + offset + r * (H + GY) }));
  });
  return { place, W, H, width: PAD * 2 + columns.length * (W + GX) - GX, height: PAD * 2 + tallest * (H + GY) - GY };
}

function pressureColour(share) {
  if (share === null || share === undefined) return "#8a96a3";
  if (share < 0.1) return "#2e9d5b";
  if (share < 0.5) return "#d9822b";
  return "#d64545";
}

function renderGraph(graph) {
  const root = $("graph");
  root.replaceChildren();
  const { place, W, H, width, height } = layout(graph);
  const w = Math.max(width, 300), h = Math.max(height, 60);
  root.setAttribute("width", w);
  root.setAttribute("height", h);
  root.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const defs = svg("defs", {}, root);
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
  svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8a96a3" }, marker);
  for (const e of graph.edges) {
    const a = place.get(e.from), b = place.get(e.to);
    if (!a || !b) continue;
    const g = svg("g", { class: "edge" }, root);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    const line = { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)" };
    if (e.chained) line["stroke-dasharray"] = "4 3";
    svg("path", line, g);
    if (!e.chained) text(g, mx, (y1 + y2) / 2 - 5, e.kind, { "text-anchor": "middle" });
  }
  for (const v of graph.vertices) {
    const p = place.get(v.id);
    const g = svg("g", { class: "vertex", "data-name": v.name, transform: `translate(${p.x},${p.y})` }, root);
    svg("rect", { width: W, height: H, rx: 8, stroke: pressureColour(v.backpressure) }, g);
    const title = svg("title", {}, g);
    title.textContent = `${v.name} (uid ${v.uid}): ${v.role}, parallelism ${v.parallelism}; records in ${count(v.records_in)}, out ${count(v.records_out)}`;
    text(g, 9, 17, v.name.length > 18 ? v.name.slice(0, 17) + "…" : v.name, { class: "name" });
    text(g, 9, 32, `${v.role} ×${v.parallelism}`, { class: "figure" });
    const rate = v.records_per_second === null || v.records_per_second === undefined ? "–" : count(v.records_per_second);
    text(g, 9, 47, `${rate} records/s`, { class: "figure rate" });
    const pressure = v.backpressure === null || v.backpressure === undefined ? "–" : Math.round(v.backpressure * 100) + " %";
    text(g, 9, 62, `backpressure ${pressure}`, { class: "figure" });
    text(g, 9, 77, `watermark lag ${duration(v.watermark_lag_ms)}`, { class: "figure" });
  }
}

function renderChart(checkpoints) {
  const root = $("checkpoint-chart");
  root.replaceChildren();
  const history = checkpoints.history.slice(-40);
  const W = 760, H = 220, L = 60, R = 70, T = 20, B = 36;
  if (!history.length) {
    text(root, W / 2, H / 2, "No checkpoint completed yet", { "text-anchor": "middle", fill: "#6a7480" });
    return;
  }
  const maxMs = Math.max(...history.map((c) => c.duration_ms), 1);
  const maxBytes = Math.max(...history.map((c) => c.bytes), 1);
  const step = (W - L - R) / history.length;
  const y = (v, max) => T + (H - T - B) * (1 - v / max);
  svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#d5dae0" }, root);
  text(root, L - 6, T + 4, duration(maxMs), { "text-anchor": "end", "font-size": 10, fill: "#2f6fde" });
  text(root, L - 6, H - B, "0", { "text-anchor": "end", "font-size": 10, fill: "#2f6fde" });
  text(root, W - R + 6, T + 4, bytes(maxBytes), { "font-size": 10, fill: "#d9822b" });
  text(root, W - R + 6, H - B, "0", { "font-size": 10, fill: "#d9822b" });
  const points = [];
  history.forEach((c, i) => {
    const x = L + i * step;
    const bar = svg("rect", {
      class: "checkpoint-bar" + (c.savepoint ? " savepoint" : ""),
      x: x + step * 0.15, y: y(c.duration_ms, maxMs), width: Math.max(step * 0.7, 1),
      height: H - B - y(c.duration_ms, maxMs), fill: c.savepoint ? "#7b61c9" : "#2f6fde", opacity: 0.75,
    }, root);
    const title = svg("title", {}, bar);
    title.textContent = `${c.savepoint ? "savepoint" : "checkpoint"} ${c.id}: ${duration(c.duration_ms)}, ${bytes(c.bytes)} uploaded, ${bytes(c.state_bytes)} of state`;
    points.push(`${x + step / 2},${y(c.bytes, maxBytes)}`);
    if (history.length <= 20 || i % Math.ceil(history.length / 20) === 0) {
      text(root, x + step / 2, H - B + 14, String(c.id), { "text-anchor": "middle", "font-size": 10, fill: "#6a7480" });
    }
  });
  svg("polyline", { points: points.join(" "), fill: "none", stroke: "#d9822b", "stroke-width": 2, class: "size-line" }, root);
  text(root, L, H - 6, "■ duration", { "font-size": 11, fill: "#2f6fde" });
  text(root, L + 80, H - 6, "— size uploaded", { "font-size": 11, fill: "#d9822b" });
  text(root, L + 200, H - 6, "■ savepoint", { "font-size": 11, fill: "#7b61c9" });
  text(root, W - R, H - 6, "checkpoint id", { "font-size": 11, fill: "#6a7480", "text-anchor": "end" });
}

function renderSavepoints(list) {
  const root = $("savepoints");
  root.replaceChildren();
  $("no-savepoints").hidden = list.length > 0;
  for (const s of list.slice().reverse().slice(0, 10)) {
    const item = document.createElement("li");
    item.textContent = s.location + " ";
    const note = document.createElement("span");
    note.className = "when";
    note.textContent = `(${when(s.taken_at_ms)}${s.stop ? ", job stopped" : ""})`;
    item.appendChild(note);
    root.appendChild(item);
  }
}

function renderJob(job, checkpoints) {
  $("empty").hidden = true;
  $("job").hidden = false;
  $("job-name").textContent = job.name;
  $("job-id").textContent = job.id;
  const status = $("job-status");
  status.textContent = job.status;
  status.className = "status " + job.status;
  const live = !["finished", "cancelled", "suspended", "failed"].includes(job.status);
  for (const id of ["savepoint-button", "stop-button", "cancel-button"]) $(id).disabled = !live || busy;
  const facts = [`submitted ${when(job.submitted_at_ms)}`, `restarts ${job.restarts}`];
  if (job.server_restarts) facts.push(`resumed after ${job.server_restarts} server restart(s)`);
  if (job.options.from_savepoint) facts.push(`from savepoint ${job.options.from_savepoint}`);
  if (job.error) facts.push(`error: ${job.error}`);
  $("job-facts").textContent = facts.join(" · ");
  $("source-title").textContent = /\.sql$/i.test(job.file) ? "SQL statements" : "Job file";
  $("source").textContent = job.text;
  renderGraph(job.graph);
  const c = checkpoints.counts;
  const spread = checkpoints.duration_ms;
  $("checkpoint-facts").textContent =
    `${c.completed} completed · ${c.failed === null ? "–" : c.failed} failed · ${c.savepoints} savepoints` +
    (checkpoints.latest ? ` · latest ${checkpoints.latest.id}: ${duration(checkpoints.latest.duration_ms)}, ${bytes(checkpoints.latest.bytes)}` : "") +
    (spread ? ` · duration ${duration(spread.min)} / ${duration(spread.mean)} / ${duration(spread.max)} (min / mean / max)` : "");
  renderChart(checkpoints);
  renderSavepoints(checkpoints.savepoints);
}

function message(textContent, error) {
  const node = $("message");
  node.textContent = textContent;
  node.className = error ? "error" : "";
}

async function refresh() {
  try {
    const { jobs } = await api("GET", "/jobs");
    $("connection").textContent = "connected";
    $("connection").className = "";
    $("login").style.display = "none";
    renderJobs(jobs);
    if (selected && jobs.some((j) => j.id === selected)) {
      const path = "/jobs/" + encodeURIComponent(selected);
      const [job, checkpoints] = await Promise.all([api("GET", path), api("GET", path + "/checkpoints")]);
      if (job.id === selected) renderJob(job, checkpoints);
    }
  } catch (e) {
    $("connection").textContent = e.message;
    $("connection").className = "down";
  }
}

async function act(label, method, suffix, done) {
  if (!selected) return;
  busy = true;
  message(label + "…");
  try {
    const answer = await api(method, "/jobs/" + encodeURIComponent(selected) + suffix);
    message(done(answer));
  } catch (e) {
    message(label + " failed: " + e.message, true);
  } finally {
    busy = false;
    refresh();
  }
}

$("savepoint-button").addEventListener("click", () =>
  act("Taking a savepoint", "POST", "/savepoints", (a) => "Savepoint written to " + a.location));
$("stop-button").addEventListener("click", () =>
  act("Stopping with a savepoint", "POST", "/stop", (a) => "Stopped; savepoint at " + a.location));
$("cancel-button").addEventListener("click", () => {
  if (confirm("Cancel this job? Its state is not saved.")) act("Cancelling", "DELETE", "", (a) => "Job " + a.status);
});
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value;
  localStorage.setItem("weir-token", token);
  refresh();
});

refresh();
setInterval(refresh, 1000);
