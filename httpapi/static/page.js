"use strict";
// The page of the HTTP interface. Everything comes from the JSON API of
// this server; values from the data are set as text, never as HTML. The
// state (region, video) lives in the query string, so a view is a link:
// /?region=US&video=v12.
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const K = 20; // videos listed
const DAMPED_MARK = 0.1; // damped share of the hour from which a video is marked (as in the terminal view)
const state = { region: "global", video: "" };

function readURL() {
  const q = new URLSearchParams(location.search);
  state.region = q.get("region") || "global";
  state.video = (q.get("video") || "").trim();
}

function stateURL() {
  const q = new URLSearchParams();
  if (state.region !== "global") q.set("region", state.region);
  if (state.video) q.set("video", state.video);
  const s = q.toString();
  return location.pathname + (s ? "?" + s : "");
}

function writeURL() {
  const url = stateURL();
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  $("permalink").href = url;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const e = new Error((body && body.error) || r.status + " " + r.statusText);
    e.status = r.status;
    throw e;
  }
  return body;
}

function utc(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19) + "Z";
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function pct(share) {
  return Math.round(100 * share) + "%";
}

// Why likes were damped, by the names of a score record's damped_reason.
const dampedReasons = {
  account_rate: "their accounts liked far above a person's rate",
};

function reasonText(reason) {
  return (reason || "").split(",").filter((r) => r).map((r) => r + ": " + (dampedReasons[r] || "damped")).join("; ");
}

// dampedMark is the mark of a video whose score record says that damping
// took DAMPED_MARK or more of its likes of the last hour
// (damped_likes_1h / likes_1h, the fields a ranker reads), or null. d is
// the record or the list's copy of its damping fields; withReason writes
// the record's damped_reason next to the share.
function dampedMark(d, withReason) {
  if (!d || typeof d.damped_likes_1h !== "number" || !(d.likes_1h > 0)) return null;
  const share = Math.min(d.damped_likes_1h / d.likes_1h, 1);
  if (share < DAMPED_MARK) return null;
  const m = document.createElement("span");
  m.className = "damped";
  m.textContent = "⚑ " + pct(share) + " bought" + (withReason && d.damped_reason ? ": " + d.damped_reason : "");
  m.title = pct(share) + " of the last hour's likes (" + d.damped_likes_1h.toLocaleString("en") + " of " +
    d.likes_1h.toLocaleString("en") + ") were damped: " + (reasonText(d.damped_reason) || "no reason given");
  return m;
}

// sparkline draws values (oldest first) as a line over a filled area.
function sparkline(values, w, h) {
  const svg = el("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "sparkline", role: "img" });
  const max = Math.max(...values, 1e-9);
  const pts = values.map((v, i) => [
    (i * (w - 2)) / Math.max(values.length - 1, 1) + 1,
    h - 2 - (v / max) * (h - 4),
  ]);
  const line = pts.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join(" ");
  el("polygon", { points: `1,${h - 1} ${line} ${w - 1},${h - 1}`, fill: "#f8d3d4" }, svg);
  el("polyline", { points: line, fill: "none", stroke: "#e8464b", "stroke-width": 1.5 }, svg);
  el("title", {}, svg).textContent = "velocity over the last hour, peak " + max.toFixed(1) + " likes/min";
  return svg;
}

async function refreshTrending() {
  const url = "/v1/trending/series?region=" + encodeURIComponent(state.region) + "&k=" + K;
  const body = $("trending"), msg = $("trending-msg");
  try {
    const s = await getJSON(url);
    body.replaceChildren();
    s.videos.forEach((v, i) => {
      const row = body.insertRow();
      row.className = "video" + (v.video_id === state.video ? " selected" : "");
      row.title = "show the windows and rates of " + v.video_id;
      row.onclick = () => select(v.video_id);
      cell(row, String(i + 1), "rank");
      const id = cell(row, v.video_id, "id");
      const mark = dampedMark(v.damping, false);
      if (mark) id.appendChild(mark);
      cell(row, v.score.toFixed(2), "num");
      cell(row, v.likes === null ? "–" : v.likes.toLocaleString("en"), "num");
      const sp = cell(row, "", "spark");
      const vel = v.velocity || [];
      if (vel.length) sp.appendChild(sparkline(vel, 120, 24));
      cell(row, vel.length ? vel[vel.length - 1].toFixed(1) : "–", "num");
    });
    $("asof").textContent = "as of " + utc(s.ts) + " (event time)";
    msg.textContent = s.videos.length ? "" : "No video is trending in this region.";
    msg.className = "muted";
  } catch (e) {
    body.replaceChildren();
    msg.textContent = e.message;
    msg.className = "error";
  }
}

async function refreshRegions() {
  try {
    const regions = await getJSON("/v1/regions");
    const sel = $("region");
    if (!regions.includes("global")) regions.unshift("global");
    if (!regions.includes(state.region)) regions.push(state.region);
    if (regions.join() !== [...sel.options].map((o) => o.value).join()) {
      sel.replaceChildren(...regions.map((r) => new Option(r, r)));
    }
    sel.value = state.region;
  } catch (e) { /* keep the regions shown */ }
}

async function refreshReady() {
  const pill = $("ready");
  try {
    const r = await fetch("/readyz", { cache: "no-store" });
    const text = (await r.text()).trim();
    pill.textContent = r.ok ? "ready" : "not ready";
    pill.title = text;
    pill.className = "pill " + (r.ok ? "ok" : "bad");
  } catch (e) {
    pill.textContent = "unreachable";
    pill.className = "pill bad";
  }
}

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// chart draws a series: likes per minute as bars (all, and counted after
// damping), the decayed rates as lines, in likes per minute.
function chart(s) {
  const W = 560, H = 250, L = 44, R = 10, T = 10, B = 34;
  const pts = s.points;
  const top = niceMax(Math.max(...pts.map((p) => Math.max(p.likes, p.rate_5m, p.rate_1h))));
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", id: "video-chart" });
  el("title", {}, svg).textContent = "likes per minute of " + s.video_id + " over the last hour";
  const x = (i) => L + ((i + 0.5) * (W - L - R)) / pts.length;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  // Grid and y axis: likes per minute.
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e7ee" }, svg);
    el("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, svg).textContent = +v.toFixed(2);
  }
  const yl = el("text", { x: 10, y: T + (H - T - B) / 2, "text-anchor": "middle",
    transform: `rotate(-90 10 ${T + (H - T - B) / 2})` }, svg);
  yl.textContent = "likes per minute";
  // x axis: minutes before the end.
  for (const m of [60, 45, 30, 15, 0]) {
    const i = pts.length - 1 - m;
    el("text", { x: i < 0 ? L : x(i), y: H - B + 13, "text-anchor": "middle" }, svg).textContent = m ? "-" + m + " min" : "now";
  }
  el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent =
    "minutes before " + clock(s.end) + " (event time)";
  // Bars: all likes of the minute, and what counted of them.
  const bw = Math.max(1, (W - L - R) / pts.length - 1.5);
  pts.forEach((p, i) => {
    if (p.likes > 0) el("rect", { x: x(i) - bw / 2, y: y(p.likes), width: bw, height: y(0) - y(p.likes), fill: "#f3b7b9" }, svg);
    if (p.counted > 0) el("rect", { x: x(i) - bw / 2, y: y(p.counted), width: bw, height: y(0) - y(p.counted), fill: "#e8464b" }, svg);
  });
  // Lines: the decayed rates.
  const line = (f, color) => el("polyline", {
    points: pts.map((p, i) => x(i).toFixed(1) + "," + y(f(p)).toFixed(1)).join(" "),
    fill: "none", stroke: color, "stroke-width": 2,
  }, svg);
  line((p) => p.rate_1h, "#2f6fdb");
  line((p) => p.rate_5m, "#1d2430");
  return svg;
}

// windowsChart draws the record's windows as bars of the same unit as the
// chart: each window's likes per minute on average, with its count.
function windowsChart(rec) {
  const ws = [["likes_1m", "1 min", 1], ["likes_5m", "5 min", 5], ["likes_1h", "1 h", 60], ["likes_24h", "24 h", 1440]]
    .filter(([f]) => typeof rec[f] === "number");
  if (!ws.length) return null;
  const W = 560, row = 22, L = 110, R = 170, T = 22;
  const H = T + row * ws.length + 4;
  const top = niceMax(Math.max(...ws.map(([f, , m]) => rec[f] / m)));
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", id: "windows-chart" });
  el("title", {}, svg).textContent = "the windows of " + rec.video_id + ", in likes per minute";
  el("text", { x: 0, y: 13 }, svg).textContent = "windows: likes per minute on average over the last …";
  ws.forEach(([f, label, minutes], i) => {
    const y = T + i * row, perMin = rec[f] / minutes;
    el("text", { x: L - 6, y: y + 15, "text-anchor": "end" }, svg).textContent = label + " (" + f + ")";
    el("rect", { x: L, y: y + 4, width: Math.max(1, ((W - L - R) * perMin) / top), height: row - 8, fill: "#9db8e8" }, svg);
    el("text", { x: W - R + 6, y: y + 15 }, svg).textContent =
      perMin.toFixed(perMin < 10 ? 2 : 1) + "/min (" + rec[f].toLocaleString("en") + " likes)";
  });
  return svg;
}

function chartLegend(s) {
  const lg = $("chart-legend");
  lg.replaceChildren();
  const key = (cls, text) => {
    const k = document.createElement("span");
    k.className = "key " + cls;
    lg.append(k, text);
  };
  key("likes", "likes in the minute");
  key("counted", "of them counted (bought likes damped)");
  key("rate5m", "velocity: rate, half-life 5 min");
  key("rate1h", "rate, half-life 1 h (likes/min)");
  lg.append(". " + pct(s.damped_share_1h) + " of the hour's " + s.likes_1h.toLocaleString("en") +
    " likes and " + pct(s.damped_share_5m) + " of the last 5 minutes' were damped as bought.");
}

// Fields of a score record, in the order shown, with their units.
const scoreUnit = {
  trending: "σ above the video's own baseline",
  hn: "HN gravity",
  "reddit-hot": "hot rank",
};
const fields = [
  ["score", 3, ""], ["likes", 0, "standing likes"], ["unique_likers", 0, "users"], ["unlikes", 0, "likes taken back"],
  ["likes_1m", 0, "likes in the last minute"], ["likes_5m", 0, "likes in the last 5 min"],
  ["likes_1h", 0, "likes in the last hour"], ["likes_24h", 0, "likes in the last 24 h"],
  ["rate_5m", 2, "likes/min, half-life 5 min"], ["rate_1h", 2, "likes/min, half-life 1 h"],
  ["rate_24h", 3, "likes/min, half-life 24 h"], ["velocity", 2, "likes/min (rate_5m)"],
  ["acceleration", 2, "likes/min (rate_5m - rate_1h)"],
  ["damped_likes_5m", 0, "of the likes of the last 5 min, taken away by damping"],
  ["damped_likes_1h", 0, "of the likes of the last hour, taken away by damping"],
  ["damped_reason", null, "why the likes of the last hour were damped"], ["model", null, ""], ["seq", 0, "records so far"], ["ts", null, "latest event time"],
];

function showRecord(rec, series) {
  const tbody = $("record").tBodies[0];
  tbody.replaceChildren();
  const add = (name, value, unit) => {
    const row = tbody.insertRow();
    cell(row, name);
    cell(row, value, "num");
    cell(row, unit, "unit");
  };
  for (const [name, digits, unit] of fields) {
    if (!rec || !(name in rec)) continue;
    let v = rec[name];
    if (name === "ts") v = utc(v);
    else if (name === "damped_reason") v = v || "none";
    else if (typeof v === "number") v = digits ? v.toFixed(digits) : v.toLocaleString("en");
    add(name, String(v), name === "score" ? scoreUnit[rec.model] || "" : unit);
  }
  if (series) {
    add("damped_share_1h", pct(series.damped_share_1h), "of the last hour's likes damped as bought");
    add("damped_share_5m", pct(series.damped_share_5m), "of the last 5 min's likes damped as bought");
  }
}

async function refreshVideo() {
  const msg = $("video-msg");
  $("video-title").textContent = state.video;
  if (!state.video) {
    $("windows").replaceChildren();
    $("chart").replaceChildren();
    $("chart-legend").replaceChildren();
    $("record").tBodies[0].replaceChildren();
    return;
  }
  const id = encodeURIComponent(state.video);
  try {
    let series = null, rec = null;
    try {
      series = await getJSON("/v1/videos/" + id + "/series");
      rec = series.record || null;
    } catch (e) {
      if (e.status !== 404 && e.status !== 501) throw e;
    }
    if (!rec) rec = await getJSON("/v1/videos/" + id);
    if (series) {
      $("chart").replaceChildren(chart(series));
      chartLegend(series);
    } else {
      $("chart").replaceChildren();
      $("chart-legend").textContent = "No like times of this video here: no chart.";
    }
    const wc = windowsChart(rec);
    if (wc) $("windows").replaceChildren(wc);
    else $("windows").replaceChildren();
    showRecord(rec, series);
    msg.replaceChildren("Last hour of likes and the score record of " + rec.video_id +
      " (as on the video-scores topic).");
    const mark = dampedMark(rec, true);
    if (mark) msg.appendChild(mark);
    msg.className = "muted";
  } catch (e) {
    $("chart").replaceChildren();
    $("chart-legend").replaceChildren();
    $("windows").replaceChildren();
    $("record").tBodies[0].replaceChildren();
    msg.textContent = e.message;
    msg.className = "error";
  }
}

function select(id) {
  state.video = id.trim();
  $("video").value = state.video;
  writeURL();
  for (const row of $("trending").rows) {
    row.classList.toggle("selected", row.cells[1].firstChild.textContent === state.video);
  }
  refreshVideo();
}

$("lookup").onsubmit = (ev) => { ev.preventDefault(); select($("video").value); };
$("region").onchange = (ev) => { state.region = ev.target.value; writeURL(); refreshTrending(); };
window.onpopstate = () => {
  readURL();
  $("video").value = state.video;
  $("region").value = state.region;
  refreshRegions(); refreshTrending(); refreshVideo();
};

readURL();
$("video").value = state.video;
$("permalink").href = stateURL();
refreshRegions(); refreshTrending(); refreshReady(); refreshVideo();
setInterval(() => { refreshTrending(); refreshVideo(); }, 5000);
setInterval(refreshRegions, 10000);
setInterval(refreshReady, 5000);
