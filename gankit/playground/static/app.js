// gankit playground page: draws what the server's Trainer sends; every number is computed in Python.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const FIELDS = [
  ["data.name", "Data", "select", "presets"],
  ["objective.name", "Objective", "select", "objectives"],
  ["objective.r1_gamma", "R1 gamma", "number"],
  ["objective.r2_gamma", "R2 gamma", "number"],
  ["optim.lr_g", "G learning rate", "number"],
  ["optim.lr_d", "D learning rate", "number"],
  ["optim.betas_g", "G Adam betas", "pair"],
  ["optim.betas_d", "D Adam betas", "pair"],
  ["train.d_steps", "D steps per G step", "int"],
  ["net.g_width", "G width", "int"],
  ["net.g_depth", "G depth", "int"],
  ["net.d_width", "D width", "int"],
  ["net.d_depth", "D depth", "int"],
  ["train.batch_size", "Batch size", "int"],
  ["train.ema_decay", "EMA decay", "number"],
  ["train.seed", "Seed", "int"],
];
let state = null, frame = null, drawn = [], drawing = false, socket = null, lastStep = -1;
const history = [];

function showMessage(text, isError) {
  $("message").textContent = text || "";
  $("message").className = isError ? "error" : "";
}

async function api(path, body) {
  const opts = { headers: { "X-Gankit-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const response = await fetch(path, opts);
  const data = await response.json();
  if (!response.ok) { showMessage(data.error || response.statusText, true); if (state) render(state); return null; }
  showMessage(data.message, false);
  render(data);
  return data;
}

function parse(kind, inputs) {
  if (kind === "pair") return inputs.map((el) => toNumber(el.value));
  if (kind === "select") return inputs[0].value;
  return toNumber(inputs[0].value);
}
function toNumber(text) { const v = Number(text); return text.trim() === "" || Number.isNaN(v) ? text : v; }

function buildForm() {
  const form = $("form");
  form.textContent = "";
  for (const [key, label, kind, options] of FIELDS) {
    if (!(key in state.values)) continue;
    const row = document.createElement("label");
    row.append(label);
    let inputs;
    if (kind === "select") {
      const select = document.createElement("select");
      for (const name of state[options]) select.append(new Option(name === "points" ? "draw points" : name, name));
      inputs = [select];
    } else if (kind === "pair") {
      inputs = [0, 1].map(() => Object.assign(document.createElement("input"), { className: "pair" }));
    } else {
      inputs = [Object.assign(document.createElement("input"), { type: "text" })];
    }
    const span = document.createElement("span");
    inputs.forEach((el, i) => { el.id = kind === "pair" ? `${key}.${i}` : key; el.name = key; span.append(el); });
    if (state.limits && key in state.limits) inputs[0].title = `at most ${state.limits[key]}`;
    row.append(span);
    form.append(row);
    inputs.forEach((el) => el.addEventListener("change", () => changed(key, kind, inputs)));
  }
}

function changed(key, kind, inputs) {
  const value = parse(kind, inputs);
  if (key === "data.name" && value === "points") {
    setDrawing(true);
    if (!drawn.length) { showMessage("draw points on the plane, then press 'Train on the drawing'", false); return; }
    api("api/settings", { changes: { "data.name": "points", "data.points": drawn } });
    return;
  }
  if (key === "data.name") setDrawing(false);
  api("api/settings", { changes: { [key]: value } });
}

function fillForm() {
  for (const [key, , kind] of FIELDS) {
    if (!(key in state.values)) continue;
    const value = state.values[key];
    if (kind === "pair") value.forEach((v, i) => { $(`${key}.${i}`).value = v; });
    else if ($(key) !== document.activeElement) $(key).value = value;
  }
}

let formMode = null;
function render(s) {
  state = s;
  const key = s.mode + (s.config || "");
  if (formMode !== key) { formMode = key; buildForm(); history.length = 0; }
  fillForm();
  $("mode-2d").classList.toggle("active", s.mode === "2d");
  $("mode-image").classList.toggle("active", s.mode === "image");
  const config = $("config");
  if (config.options.length !== s.configs.length) {
    config.textContent = "";
    for (const name of s.configs) config.append(new Option(name, name));
  }
  config.value = s.config || s.default_config;
  config.hidden = s.mode !== "image";
  $("mode-image").disabled = !s.configs.length;
  const notes = s.config_notes || [];  // preset files that could not be read, skipped
  $("config-notes").textContent = notes.join("; ");
  $("config-notes").hidden = !notes.length;
  $("plane").hidden = s.mode !== "2d";
  $("legend").hidden = s.mode !== "2d";
  $("grid").hidden = s.mode !== "image";
  document.querySelectorAll(".m2d").forEach((el) => { el.hidden = s.mode !== "2d"; });
  document.querySelectorAll(".mimg").forEach((el) => { el.hidden = s.mode !== "image"; });
  $("step_d").disabled = $("step_g").disabled = false;
  $("slow").checked = s.slow;
  updateGame(s);
}

function updateGame(g) {
  $("play").textContent = g.playing ? "Pause" : "Play";
  $("clean-value").textContent = g.clean ? "yes" : "no: settings changed mid-game";
  if (g.message) showMessage(g.message, true);
}

// ---- frames: uint32 header length | JSON header | arrays at 4-byte offsets
function decode(buffer) {
  const n = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const base = 4 + n, arrays = {};
  const types = { int16: Int16Array, uint8: Uint8Array, float32: Float32Array, png: Uint8Array };
  for (const a of header.arrays) {
    const T = types[a.dtype];
    arrays[a.name] = new T(buffer, base + a.offset, a.bytes / T.BYTES_PER_ELEMENT);
  }
  return { header, arrays };
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?token=${encodeURIComponent(TOKEN)}`;
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => { frame = decode(event.data); onFrame(frame.header); };
  socket.onclose = () => setTimeout(connect, 1000);
}

function fmt(v, digits) { return v === null || v === undefined ? "-" : v.toFixed(digits); }

function onFrame(h) {
  $("step-value").textContent = h.step;
  $("rate-value").textContent = h.playing ? h.steps_per_second.toFixed(0) : "-";
  if (h.modes !== undefined) {
    $("modes-value").textContent = h.modes === null ? "- (no modes)" : `${h.modes}/${h.num_modes}`;
    $("hq-value").textContent = h.high_quality === null || h.high_quality === undefined ? "-" : `${(100 * h.high_quality).toFixed(1)}%`;
    $("kl-value").textContent = fmt(h.reverse_kl, 3);
  }
  $("fid-value").textContent = h.fid === null ? (h.fid_note || "-") : `${h.fid.toFixed(1)} (${h.fid_note})`;
  updateGame(h);
  if (state) { state.playing = h.playing; state.step = h.step; }
  if (h.step < lastStep) history.length = 0;
  lastStep = h.step;
  if (h.stats && Object.keys(h.stats).length) {
    history.push({ step: h.step, ...h.stats });
    if (history.length > 800) history.shift();
  }
  requestAnimationFrame(draw);
}

// ---- drawing
const plane = $("plane"), ctx = plane.getContext("2d");
const heatCanvas = document.createElement("canvas");
heatCanvas.width = heatCanvas.height = 64;
const GREEN = [27, 158, 119], PURPLE = [123, 63, 160];

function heatColor(v) {  // v in [0, 1]: 1 = D says real
  // the square root lifts the small margins of a D near equilibrium (D(x) ~ 0.5) into view
  const t = Math.sqrt(Math.min(1, Math.abs(v - 0.5) * 2)) * 0.7, c = v >= 0.5 ? GREEN : PURPLE;
  return c.map((x) => Math.round(255 + (x - 255) * t));
}

function toPixel(x, y, extent) {
  return [(x / extent + 1) / 2 * plane.width, (1 - y / extent) / 2 * plane.height];
}

function draw() {
  if (!frame) return;
  const { header: h, arrays: a } = frame;
  if (h.kind === "image") return drawImage(a.grid);
  const res = Math.round(Math.sqrt(a.heat.length));
  if (heatCanvas.width !== res) heatCanvas.width = heatCanvas.height = res;
  const hctx = heatCanvas.getContext("2d"), img = hctx.createImageData(res, res);
  for (let i = 0; i < a.heat.length; i++) {
    const [r, g, b] = heatColor(a.heat[i] / 255);
    img.data.set([r, g, b, 255], 4 * i);
  }
  hctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(heatCanvas, 0, 0, plane.width, plane.height);
  const e = h.extent, q = e / 32767;
  dots(a.real, q, e, "rgba(27,158,119,0.8)");
  dots(a.fake, q, e, "rgba(123,63,160,0.85)");
  if (h.arrow_max) {
    ctx.strokeStyle = "rgba(40,40,40,0.5)";
    ctx.beginPath();
    const len = 0.12 * e / 32767;
    for (let i = 0; i < a.fake.length; i += 4) {  // every second sample keeps the field readable
      const [x0, y0] = toPixel(a.fake[i] * q, a.fake[i + 1] * q, e);
      const [x1, y1] = toPixel(a.fake[i] * q + a.push[i] * len, a.fake[i + 1] * q + a.push[i + 1] * len, e);
      ctx.moveTo(x0, y0); ctx.lineTo(x1, y1);
    }
    ctx.stroke();
  }
  if (drawing) dots(drawn.flat(), 1, e, "#000");
  drawCharts();
}

function dots(xy, q, e, color) {
  ctx.fillStyle = color;
  for (let i = 0; i < xy.length; i += 2) {
    const [x, y] = toPixel(xy[i] * q, xy[i + 1] * q, e);
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  }
}

let gridUrl = null;
function drawImage(png) {
  if (gridUrl) URL.revokeObjectURL(gridUrl);
  gridUrl = URL.createObjectURL(new Blob([png], { type: "image/png" }));
  $("grid").src = gridUrl;
  drawCharts();
}

function chart(canvas, series, title) {
  const c = canvas.getContext("2d"), w = canvas.width, hgt = canvas.height, pad = 28;
  c.fillStyle = "#fff"; c.fillRect(0, 0, w, hgt);
  c.fillStyle = "#333"; c.font = "12px sans-serif"; c.fillText(title, pad, 13);
  const rows = history.filter((r) => series.some(([k]) => typeof r[k] === "number"));
  if (rows.length < 2) return;
  let lo = Infinity, hi = -Infinity;
  for (const r of rows) for (const [k] of series) if (typeof r[k] === "number") { lo = Math.min(lo, r[k]); hi = Math.max(hi, r[k]); }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const s0 = rows[0].step, s1 = Math.max(rows[rows.length - 1].step, s0 + 1);
  const X = (s) => pad + (s - s0) / (s1 - s0) * (w - pad - 6), Y = (v) => hgt - 16 - (v - lo) / (hi - lo) * (hgt - 36);
  c.strokeStyle = "#ccc"; c.beginPath(); c.moveTo(pad, hgt - 16); c.lineTo(w - 6, hgt - 16); c.stroke();
  c.fillStyle = "#777"; c.fillText(hi.toPrecision(3), 0, 28); c.fillText(lo.toPrecision(3), 0, hgt - 18);
  c.fillText(`step ${s1}`, w - 80, hgt - 3);
  series.forEach(([k, color, label], i) => {
    c.strokeStyle = color; c.lineWidth = 1.5; c.beginPath();
    let started = false;
    for (const r of rows) {
      if (typeof r[k] !== "number") continue;
      if (started) c.lineTo(X(r.step), Y(r[k])); else { c.moveTo(X(r.step), Y(r[k])); started = true; }
    }
    c.stroke();
    c.fillStyle = color; c.fillText(label, pad + 110 + 80 * i, 13);
  });
}

function drawCharts() {
  chart($("loss-chart"), [["loss_d", "#e65100", "D loss"], ["loss_g", "#1565c0", "G loss"]], "losses");
  chart($("d-chart"), [["d_real", "#1b9e77", "D(x)"], ["d_fake", "#7b3fa0", "D(G(z))"]], "D outputs");
}

// ---- drawing points with the mouse
function setDrawing(on) {
  drawing = on;
  $("draw-tools").hidden = !on;
  plane.classList.toggle("drawing", on);
}
function addPoint(event) {
  if (!drawing || !frame || frame.header.kind !== "2d") return;
  const r = plane.getBoundingClientRect(), e = frame.header.extent;
  const x = ((event.clientX - r.left) / r.width * 2 - 1) * e, y = (1 - (event.clientY - r.top) / r.height * 2) * e;
  drawn.push([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
  requestAnimationFrame(draw);
}
let mouseDown = false;
plane.addEventListener("mousedown", (e) => { mouseDown = true; addPoint(e); });
plane.addEventListener("mousemove", (e) => { if (mouseDown) addPoint(e); });
window.addEventListener("mouseup", () => { mouseDown = false; });
$("use-drawing").onclick = () => {
  if (!drawn.length) return showMessage("draw some points on the plane first", true);
  api("api/settings", { changes: { "data.name": "points", "data.points": drawn } });
};
$("clear-drawing").onclick = () => { drawn = []; requestAnimationFrame(draw); };

// ---- controls
$("play").onclick = () => api("api/control", { action: state && state.playing ? "pause" : "play" });
for (const id of ["step", "step_d", "step_g", "reset"]) $(id).onclick = () => api("api/control", { action: id });
$("slow").onchange = () => api("api/control", { action: $("slow").checked ? "slow" : "fast" });
$("mode-2d").onclick = () => { setDrawing(false); api("api/mode", { mode: "2d" }); };
$("mode-image").onclick = () => { setDrawing(false); api("api/mode", { mode: "image", config: $("config").value || null }); };
$("config").onchange = () => api("api/mode", { mode: "image", config: $("config").value });
$("export").href = `api/export?token=${encodeURIComponent(TOKEN)}`;
$("checkpoint").href = `api/checkpoint?token=${encodeURIComponent(TOKEN)}`;

// a lesson's ready game (gankit lesson NAME --play RUN): the URL's #key=json&... settings, applied once
function lessonSettings() {
  const changes = {};
  for (const [key, value] of new URLSearchParams(location.hash.slice(1))) {
    try { changes[key] = JSON.parse(value); } catch (e) { changes[key] = value; }
  }
  return changes;
}
async function applyLessonSettings() {
  const changes = lessonSettings();
  if (Object.keys(changes).length) await api("api/settings", { changes });
}
window.addEventListener("hashchange", applyLessonSettings);  // another game's link in the same tab
api("api/state").then(applyLessonSettings).then(connect);
