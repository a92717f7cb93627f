// mp3net serve: the page. No external assets; talks to the JSON API of mp3net/serve/app.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], current: null, version: {}, busy: false, sequence: [] };
const COLORS = ["#0b63ce", "#c2410c", "#1b7f3b", "#7e22ce", "#a16207", "#be123c"];

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new Error("the server cannot be reached (is mp3net serve still running?)");
  }
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) throw new Error((data && data.error) || `request failed (${res.status})`);
  return data;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function fmtParams(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : `${n}`;
}

function describe(m) {
  if (m.status !== "ready") return `${m.status}${m.error ? ": " + m.error : ""}`;
  const parts = [`${m.sample_rate} Hz`, `${m.channels} ch`, `clip ${m.clip_seconds.toFixed(2)} s`,
    `${fmtParams(m.parameters)} parameters`];
  if (m.step !== null && m.step !== undefined) parts.push(`step ${m.step}`);
  if (m.watched) parts.push("watching for new exports");
  return parts.join(" · ");
}

async function refreshModels() {
  let data;
  try { data = await api("/api/models"); } catch (e) { showError(e.message); return; }
  const select = $("model");
  const first = state.models.length === 0;
  state.models = data.models;
  if (first) {
    for (const m of data.models) {
      const opt = document.createElement("option");
      opt.value = m.id; opt.textContent = m.id;
      select.appendChild(opt);
    }
    const prec = $("precision");
    for (const p of data.precisions) {
      const opt = document.createElement("option");
      opt.value = p; opt.textContent = p;
      prec.appendChild(opt);
    }
    state.current = select.value;
  }
  for (const m of data.models) {
    const seen = state.version[m.id];
    if (seen !== undefined && m.version > seen && m.id === state.current) {
      const note = $("model-note");
      note.textContent = `new export loaded${m.step !== null ? " (step " + m.step + ")" : ""}`;
      note.hidden = false;
    }
    state.version[m.id] = m.version;
  }
  showModel();
}

function currentModel() {
  return state.models.find((m) => m.id === state.current);
}

function showModel() {
  const m = currentModel();
  if (!m) return;
  $("model-info").textContent = describe(m);
  setBusy(state.busy);
  if (m.run) refreshMetrics(m.id); else $("training").hidden = true;
}

async function refreshMetrics(id) {
  let data;
  try { data = await api(`/api/models/${encodeURIComponent(id)}/metrics`); } catch (e) { return; }
  const keys = Object.keys(data.series);
  const ton = keys.filter((k) => /tonality/i.test(k));
  const fd = keys.filter((k) => /(^|[/_])(fd|frechet)([/_]|$)/i.test(k));
  $("training").hidden = false;
  drawChart($("chart-tonality"), ton.map((k) => [k, data.series[k]]));
  drawChart($("chart-fd"), fd.map((k) => [k, data.series[k]]));
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(svg, series) {
  svg.replaceChildren();
  const W = 480, H = 220, L = 46, R = 8, T = 8, B = 34;
  const pts = series.flatMap(([, p]) => p);
  if (pts.length === 0) {
    svg.appendChild(svgEl("text", { x: L, y: H / 2 }, "not logged by this run yet"));
    return;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, y1.toPrecision(3)));
  svg.appendChild(svgEl("text", { x: L - 4, y: H - B, "text-anchor": "end" }, y0.toPrecision(3)));
  svg.appendChild(svgEl("text", { x: L, y: H - B + 12 }, `${x0}`));
  svg.appendChild(svgEl("text", { x: W - R, y: H - B + 12, "text-anchor": "end" }, `step ${x1}`));
  series.forEach(([name, p], i) => {
    const color = COLORS[i % COLORS.length];
    const d = p.map((q, j) => `${j ? "L" : "M"}${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`).join("");
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 1.5 }));
    svg.appendChild(svgEl("text", { x: L + 6 + i * 120, y: H - 6, fill: color, style: `fill:${color}` }, name));
  });
}

function readNumber(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function common() {
  return {
    model: state.current,
    duration: readNumber("duration"),
    truncation: readNumber("truncation"),
    precision: $("precision").value,
  };
}

function setBusy(busy) {
  state.busy = busy;
  const m = currentModel();
  const ready = m && m.status === "ready";
  for (const id of ["generate", "random", "grid", "interpolate"]) $(id).disabled = busy || !ready;
}

async function run(request) {
  showError("");
  setBusy(true);
  $("results").replaceChildren();
  $("sequence").hidden = true;
  state.sequence = [];
  const progress = $("progress");
  progress.hidden = false; progress.value = 0;
  $("status-text").textContent = "queued…";
  try {
    let job = await api("/api/jobs", request);
    const shown = new Set();
    for (;;) {
      for (const t of job.tracks) if (!shown.has(t.index)) { shown.add(t.index); addTrack(t, job); }
      progress.value = job.progress;
      const pct = Math.round(job.progress * 100);
      $("status-text").textContent = job.status === "running"
        ? `generating… ${pct}% (${job.tracks.length}/${job.kind === "interpolate" ? job.steps : job.seeds.length} tracks)`
        : job.status === "queued" ? "queued…" : "";
      if (job.status === "done" || job.status === "error") break;
      await new Promise((r) => setTimeout(r, 250));
      job = await api(`/api/jobs/${job.id}`);
    }
    if (job.status === "error") throw new Error(job.error);
    $("status-text").textContent = `done in ${job.elapsed.toFixed(1)} s` +
      (job.kind === "generate" ? ` · seed ${job.seeds[0]}` : "");
    if (job.kind === "interpolate") {
      $("sequence").hidden = false;
      $("sequence-text").textContent = `${job.steps} steps from seed ${job.seeds[0]} to seed ${job.seeds[1]}`;
      playSequence(0);
    }
  } catch (e) {
    showError(e.message);
    $("status-text").textContent = "";
  } finally {
    progress.hidden = true;
    setBusy(false);
  }
}

function addTrack(t, job) {
  const card = document.createElement("article");
  card.className = "track";
  card.dataset.index = t.index;
  const h = document.createElement("h3");
  h.textContent = `${t.label} · ${t.seconds.toFixed(2)} s`;
  if (t.peak_dbfs !== null) h.textContent += ` · peak ${t.peak_dbfs.toFixed(1)} dBFS`;
  if (t.clipped_share > 0) {
    const c = document.createElement("span");
    c.className = "clipped";
    c.textContent = ` · clipped (${(100 * t.clipped_share).toFixed(3)} % of samples)`;
    c.title = "samples beyond full scale are clipped in the files; mp3net generate --gain lowers the level";
    h.appendChild(c);
  }
  const audio = document.createElement("audio");
  audio.controls = true; audio.preload = "auto"; audio.src = t.audio;
  const img = document.createElement("img");
  img.src = t.spectrogram; img.alt = `spectrogram of ${t.label}`;
  const dl = document.createElement("div");
  dl.className = "downloads";
  dl.append("download: ");
  for (const [fmt, href] of Object.entries(t.downloads)) {
    const a = document.createElement("a");
    a.href = href; a.textContent = fmt; a.className = `download-${fmt}`;
    a.setAttribute("download", "");
    dl.appendChild(a);
  }
  card.append(h, audio, img, dl);
  if (job.kind === "interpolate") {
    state.sequence.push(audio);
    audio.addEventListener("ended", () => playSequence(state.sequence.indexOf(audio) + 1));
  }
  $("results").appendChild(card);
}

function playSequence(i) {
  document.querySelectorAll(".track.playing").forEach((c) => c.classList.remove("playing"));
  const audio = state.sequence[i];
  if (!audio) return;
  audio.closest(".track").classList.add("playing");
  audio.currentTime = 0;
  audio.play().catch(() => { /* autoplay refused: the button plays it */ });
}

$("model").addEventListener("change", () => {
  state.current = $("model").value;
  $("model-note").hidden = true;
  showModel();
});
$("generate").addEventListener("click", () => run({ ...common(), kind: "generate", seed: readNumber("seed") }));
$("random").addEventListener("click", () => run({ ...common(), kind: "generate", seed: "random" }));
$("grid").addEventListener("click", () =>
  run({ ...common(), kind: "grid", n: readNumber("grid-n"), seed: readNumber("grid-seed") }));
$("interpolate").addEventListener("click", () => run({
  ...common(), kind: "interpolate", seed_a: readNumber("seed-a"), seed_b: readNumber("seed-b"),
  steps: readNumber("steps"),
}));
$("play-sequence").addEventListener("click", () => playSequence(0));

refreshModels();
setInterval(refreshModels, 5000);
