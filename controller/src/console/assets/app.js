// The supercloud console: renders the controller's console document
// (GET /console/state, then every change from GET /console/events) into the
// map, the VM table, the migration timeline and the placement decisions.
// Everything from the controller is written as text, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const MAX_MIGRATIONS = 50;
// Migrations seen by this page, newest last: the controller keeps the last one.
const migrations = [];
let lastHosts = {};

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(n, digits) {
  return typeof n === "number" ? n.toFixed(digits === undefined ? 1 : digits) : "–";
}

function rate(bps) {
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " MB/s";
  if (bps >= 1e3) return (bps / 1e3).toFixed(1) + " kB/s";
  return Math.round(bps) + " B/s";
}

function latencyClass(ms) {
  if (typeof ms !== "number") return "none";
  return ms < 25 ? "good" : ms < 60 ? "mid" : "bad";
}
const LATENCY_COLOUR = { good: "#27ae60", mid: "#e67e22", bad: "#c0392b", none: "#95a5a6" };

// Clouds on a circle, or on an equirectangular map when every one has a location.
function cloudPositions(clouds) {
  const pos = {};
  const located = clouds.length > 0 && clouds.every(c => Array.isArray(c.location));
  clouds.forEach((c, i) => {
    if (located) {
      pos[c.name] = { x: 60 + (c.location[1] + 180) / 360 * 680, y: 40 + (90 - c.location[0]) / 180 * 360 };
    } else {
      const a = -Math.PI / 2 + 2 * Math.PI * i / Math.max(clouds.length, 1);
      pos[c.name] = { x: 400 + 280 * Math.cos(a), y: 245 + 150 * Math.sin(a) };
    }
  });
  return pos;
}

function renderMap(doc) {
  const svg = document.getElementById("map");
  svg.replaceChildren();
  const clouds = doc.clouds || [];
  const cpos = cloudPositions(clouds);
  const hpos = {};
  for (const c of clouds) {
    const hosts = (doc.hosts || []).filter(h => h.cloud === c.name);
    const p = cpos[c.name];
    svg.append(el("svg:ellipse", { class: "cloud", cx: p.x, cy: p.y, rx: 110, ry: 70 }));
    svg.append(el("svg:text", { class: "cloud-name", x: p.x, y: p.y - 52, "text-anchor": "middle" },
      c.name + (c.region ? " (" + c.region + ")" : "")));
    hosts.forEach((h, i) => {
      const a = 2 * Math.PI * i / Math.max(hosts.length, 1);
      const r = hosts.length > 1 ? 38 : 0;
      hpos[h.name] = { x: p.x + r * Math.cos(a), y: p.y + 8 + r * Math.sin(a) };
    });
  }
  const tunnels = el("svg:g");
  const nodes = el("svg:g");
  svg.append(tunnels, nodes);
  for (const t of doc.tunnels || []) {
    const a = hpos[t.a], b = hpos[t.b];
    if (!a || !b) continue;
    const cls = latencyClass(t.latency_ms);
    const width = 1.5 + Math.log10(1 + (t.bytes_per_s || 0) / 1000) * 2;
    const line = el("svg:line", {
      class: "tunnel" + (t.up ? "" : " down"), x1: a.x, y1: a.y, x2: b.x, y2: b.y,
      stroke: LATENCY_COLOUR[cls], "stroke-width": width.toFixed(1),
      "data-tunnel": t.a + "-" + t.b, "data-latency": cls,
    });
    line.append(el("svg:title", {}, t.a + " – " + t.b + ": " + fmt(t.latency_ms) + " ms, " + rate(t.bytes_per_s || 0)));
    tunnels.append(line);
    const label = fmt(t.latency_ms) + " ms" + (t.bytes_per_s > 0 ? " · " + rate(t.bytes_per_s) : "");
    tunnels.append(el("svg:text", { class: "tunnel-label", x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 4, "text-anchor": "middle" }, label));
  }
  for (const h of doc.hosts || []) {
    const p = hpos[h.name];
    if (!p) continue;
    const node = el("svg:circle", { class: "host" + (h.connected ? "" : " down"), cx: p.x, cy: p.y, r: 9, "data-host": h.name });
    node.append(el("svg:title", {}, h.name + " " + (h.tunnel_endpoint || "") + (h.connected ? "" : " (switch not connected)")));
    nodes.append(node);
    nodes.append(el("svg:text", { class: "host-name", x: p.x, y: p.y + 22, "text-anchor": "middle" }, h.name));
    const vms = (doc.vms || []).filter(v => v.host === h.name).map(v => v.name);
    if (vms.length) {
      nodes.append(el("svg:text", { class: "vm-name", x: p.x + 13, y: p.y - 6 }, vms.slice(0, 4).join(", ") + (vms.length > 4 ? " +" + (vms.length - 4) : "")));
    }
  }
}

function renderVms(doc) {
  const body = document.querySelector("#vms tbody");
  body.replaceChildren();
  for (const v of doc.vms || []) {
    const clients = (v.clients || []).map(c => c.cloud + " " + rate(c.bytes_per_s)).join(", ");
    const row = el("tr", { "data-vm": v.name, "data-host": v.host });
    for (const cell of [v.name, v.host, v.cloud, v.ip, v.public_ip || "–", clients || "–"]) {
      row.append(el("td", {}, cell));
    }
    body.append(row);
  }
}

// The controller reports the last migration's timeline; a new VM, or events that
// no longer extend the ones seen, start a new entry.
function noteTimeline(doc) {
  const t = doc.timeline || {};
  if (!t.vm || !(t.events || []).length) return;
  const last = migrations[migrations.length - 1];
  const extends_ = last && last.vm === t.vm && last.events.length <= t.events.length &&
    last.events.every((e, i) => e[0] === t.events[i][0] && e[1] === t.events[i][1]);
  if (extends_) {
    Object.assign(last, { events: t.events, forwarded: t.forwarded_by_old_host, lost: t.lost_at_old_host });
  } else {
    migrations.push({ vm: t.vm, from: lastHosts[t.vm] || null, events: t.events,
      forwarded: t.forwarded_by_old_host, lost: t.lost_at_old_host });
    if (migrations.length > MAX_MIGRATIONS) migrations.shift();
  }
  const now = (doc.vms || []).find(v => v.name === t.vm);
  if (now) migrations[migrations.length - 1].to = now.host;
}

function renderMigrations(doc) {
  document.getElementById("migration-now").textContent = doc.migration
    ? "In progress: " + JSON.stringify(doc.migration) : "No migration in progress.";
  const list = document.getElementById("migrations");
  list.replaceChildren();
  for (const m of migrations.slice().reverse()) {
    const names = m.events.map(e => e[0]);
    const item = el("li", { class: "migration", "data-vm": m.vm, "data-events": names.join("|") });
    const route = m.from && m.to && m.from !== m.to ? ": " + m.from + " → " + m.to : "";
    const total = m.events.length ? m.events[m.events.length - 1][1] : 0;
    item.append(el("strong", {}, m.vm + route), document.createTextNode(" (" + fmt(total) + " ms)"));
    const bar = el("div", { class: "phases" });
    m.events.forEach((e, i) => {
      if (i === 0) return;
      const ms = e[1] - m.events[i - 1][1];
      const seg = el("div", { class: "phase" });
      // Through the CSS object model: the page's policy refuses style attributes.
      seg.style.flexGrow = String(Math.max(ms, 0.5));
      seg.append(el("span", { hidden: "" }, e[0]));
      seg.title = m.events[i - 1][0] + " → " + e[0] + ": " + fmt(ms) + " ms";
      bar.append(seg);
    });
    item.append(bar);
    item.append(el("div", { class: "events" }, m.events.map(e => e[0] + " @ " + fmt(e[1]) + " ms").join(" · ")));
    const counts = "packets forwarded by the old host: " + (m.forwarded ?? "–") + ", lost: " + (m.lost ?? "–");
    item.append(el("div", { class: "counts" }, counts));
    list.append(item);
  }
}

function why(w) {
  if (!w || typeof w !== "object") return String(w ?? "");
  const rest = Object.entries(w).filter(([k]) => k !== "reason").map(([k, v]) => k + " " + (typeof v === "number" ? fmt(v) : JSON.stringify(v)));
  return w.reason + (rest.length ? " (" + rest.join(", ") + ")" : "");
}

function renderPlacement(doc) {
  const body = document.querySelector("#decisions tbody");
  body.replaceChildren();
  if (!Array.isArray(doc.decisions)) {
    const row = el("tr");
    row.append(el("td", { colspan: 7 }, doc.detailed === false ? "Too many VMs for the plan here: scc placement plan." : "No plan yet."));
    body.append(row);
  }
  for (const d of doc.decisions || []) {
    const row = el("tr", { "data-decision": d.vm });
    for (const cell of [d.vm, d.now, d.best, d.migrate ? "yes" : "no",
      fmt(d.latency_now_ms) + " → " + fmt(d.latency_best_ms), fmt(d.gain, 2) + " / " + fmt(d.cost, 2), why(d.why)]) {
      row.append(el("td", {}, cell));
    }
    body.append(row);
  }
  const moves = document.getElementById("moves");
  moves.replaceChildren();
  const m = doc.moves || {};
  const all = (m.moving ? [m.moving] : []).concat(m.history || []);
  for (const r of all) {
    const d = r.decision || {};
    const text = r.vm + ": " + r.from_host + " → " + r.to_host + " (" + r.to_cloud + "), " +
      (r.outcome || "running") + "; expected latency " + fmt(d.latency_now_ms) + " → " + fmt(d.latency_best_ms) +
      " ms; " + why(d.why);
    moves.append(el("li", { "data-move": r.vm }, text));
  }
  if (!all.length) moves.append(el("li", {}, "none yet"));
}

function render(doc) {
  if (!doc || doc.error) return;
  noteTimeline(doc);
  document.getElementById("version").textContent = "program version " + doc.version + " · policy " + doc.policy;
  renderMap(doc);
  renderVms(doc);
  renderMigrations(doc);
  renderPlacement(doc);
  lastHosts = Object.fromEntries((doc.vms || []).map(v => [v.name, v.host]));
  document.body.dataset.version = doc.version;
}

// As the controller's Retry-After when it refuses a stream.
const RETRY_MS = 10000;

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/console/events");
  events.addEventListener("state", e => {
    live.dataset.live = "yes";
    live.textContent = "live";
    render(JSON.parse(e.data));
  });
  // The browser reconnects by itself after a stream ends (the controller ends
  // each one after a while), but gives up for good on an answer other than 200:
  // then ask why, and sign in again (401) or retry later (503, too many
  // consoles watching).
  events.onerror = () => {
    live.dataset.live = "no";
    live.textContent = "reconnecting…";
    if (events.readyState !== EventSource.CLOSED) return;
    fetch("/console/state", { credentials: "same-origin" })
      .then(r => {
        if (r.status === 401) {
          window.location.assign("/console");
          return;
        }
        if (r.ok) r.json().then(render).catch(() => {});
        setTimeout(connect, RETRY_MS);
      })
      .catch(() => setTimeout(connect, RETRY_MS));
  };
}

fetch("/console/state", { credentials: "same-origin" })
  .then(r => r.ok ? r.json() : null)
  .then(render)
  .catch(() => {})
  .finally(connect);
