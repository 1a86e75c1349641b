"""The topology as one self-contained HTML page: static (`vethlab graph -o lab.html`)
or live (served by `vethlab web`, same page plus an event stream and actions).

Graphviz lays the picture out (the same .dot as `vethlab graph`, every vertex and
edge carrying an id), and the page colours the SVG it made: an edge stands for one
or two interfaces (`ends`), and its colour follows their admin and operational
state.  No script or style is fetched from anywhere: the page works offline and
from a file.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from typing import Any

from ..errors import ConflictError
from .graph import Picture, to_dot

#: above this many vertices, `dot`'s ranked layout gets very wide: a force layout reads better
FORCE_LAYOUT_FROM = 120


def render_svg(pic: Picture) -> str:
    """The picture as SVG, laid out by Graphviz (dot, or sfdp for large labs)."""
    engine = "dot" if len(pic.vertices) < FORCE_LAYOUT_FROM else "sfdp"
    tool = shutil.which(engine) or shutil.which("dot")
    if tool is None:
        raise ConflictError("the page is laid out by Graphviz: apt-get install graphviz")
    argv = [tool, "-Tsvg"] + (["-Ksfdp", "-Goverlap=prism", "-Gsplines=false"] if engine == "sfdp" else [])
    done = subprocess.run(argv, input=to_dot(pic), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConflictError(f"Graphviz could not lay the page out: {done.stderr.strip()[:300]}")
    svg = done.stdout
    return svg[svg.index("<svg"):]  # drop the XML prologue and doctype: the SVG is inline


def page_data(pic: Picture) -> dict[str, Any]:
    """What the page's script knows of the picture: each SVG element's id and meaning."""
    return {
        "lab": pic.lab,
        "vertices": [{"id": f"v{n}", "ident": v.ident, "kind": v.kind, "label": v.label}
                     for n, v in enumerate(pic.vertices)],
        "edges": [{"id": f"e{n}", "a": e.a, "b": e.b, "ends": [list(end) for end in e.ends],
                   "label": [" ".join(e.a_label), " ".join(e.b_label), *e.label]}
                  for n, e in enumerate(pic.edges)],
    }


def page(pic: Picture, live: bool, snapshot: dict[str, Any] | None = None) -> str:
    """The whole page.  `snapshot`: a `status` report to colour a static page with."""
    data = page_data(pic)
    data["live"] = live
    data["snapshot"] = snapshot
    # `</` inside a script element would end it: JSON allows escaping the slash
    blob = json.dumps(data).replace("</", "<\\/")
    title = html.escape(f"vethlab — {pic.lab}")
    return _TEMPLATE.replace("@TITLE@", title).replace("@SVG@", render_svg(pic)).replace("@DATA@", blob) \
        .replace("@SCRIPT@", _SCRIPT)


def static_page(pic: Picture, snapshot: dict[str, Any] | None = None) -> str:
    return page(pic, live=False, snapshot=snapshot)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { margin: 0; font: 14px Helvetica, Arial, sans-serif; display: flex; height: 100vh; }
 #main { flex: 1; overflow: auto; }
 #bar { padding: 6px 12px; background: #f1f3f4; border-bottom: 1px solid #ddd; }
 #conn.live { color: #188038; } #conn.lost { color: #d93025; }
 #side { width: 360px; border-left: 1px solid #ddd; padding: 10px; overflow: auto; background: #fafafa; }
 #side table { border-collapse: collapse; font-size: 12px; width: 100%; margin-bottom: 8px; }
 #side td, #side th { border-bottom: 1px solid #eee; padding: 2px 4px; text-align: left; vertical-align: top; }
 #side button { margin: 2px; }
 svg { max-width: 100%; height: auto; }
 g.node, g.edge { cursor: pointer; }
 g.edge path { stroke-width: 2.5; }
 g.edge[data-state="up"] path { stroke: #188038; }
 g.edge[data-state="down"] path { stroke: #d93025; stroke-width: 3.5; }
 g.edge[data-state="admin-down"] path { stroke: #d93025; stroke-width: 3.5; stroke-dasharray: 6 4; }
 g.edge[data-state="unknown"] path { stroke: #9aa0a6; }
 g.edge[data-state="static"] path { stroke: #5f6368; }
 g.node[data-services="failed"] polygon, g.node[data-services="failed"] ellipse { stroke: #d93025; stroke-width: 3; }
 g.selected path, g.selected polygon, g.selected ellipse { stroke-width: 5 !important; }
 #message { margin-top: 8px; font-weight: bold; }
 .legend span { margin-right: 10px; }
</style></head>
<body>
<div id="main">
 <div id="bar"><b id="labname"></b> &nbsp; <span id="conn"></span> &nbsp;
  <span class="legend"><span style="color:#188038">━ up</span><span style="color:#d93025">━ no carrier</span>
  <span style="color:#d93025">╍ admin down</span><span style="color:#9aa0a6">━ unknown</span></span></div>
 <div id="graph">@SVG@</div>
</div>
<div id="side"><p>Click a node or a link.</p></div>
<script type="application/json" id="vethlab-data">@DATA@</script>
<script>@SCRIPT@</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("vethlab-data").textContent);
const token = new URLSearchParams(location.search).get("token");
const base = location.pathname.replace(/\/$/, "");
const ifstate = new Map();   // "node:ifname" -> {admin_state, operstate, carrier, ...}
let services = [];
let selected = null;
let lastMessage = {text: "", status: ""};   // survives the panel's re-rendering
const key = (node, ifname) => node + ":" + ifname;

function endOk(s) {
  return s.operstate === "UP" || (s.admin_state === "up" && s.carrier && s.operstate === "UNKNOWN");
}
function edgeState(edge) {
  if (edge.ends.length === 0) return "static";
  const seen = edge.ends.map(([n, i]) => ifstate.get(key(n, i))).filter(Boolean);
  if (seen.length === 0) return "unknown";
  if (seen.some(s => s.admin_state === "down")) return "admin-down";
  if (seen.length < edge.ends.length || !seen.every(endOk)) return "down";
  return "up";
}
function paint() {
  for (const edge of data.edges) {
    const el = document.getElementById(edge.id);
    if (!el) continue;
    el.dataset.state = edgeState(edge);
    el.dataset.ends = edge.ends.map(([n, i]) => key(n, i)).join(" ");
  }
  for (const v of data.vertices) {
    const el = document.getElementById(v.id);
    if (!el) continue;
    el.dataset.ident = v.ident;
    const mine = services.filter(s => s.node === v.ident);
    el.dataset.services = mine.length === 0 ? "none" : (mine.every(s => s.state === "running") ? "running" : "failed");
  }
}
function absorb(report) {
  for (const i of report.interfaces) ifstate.set(key(i.node, i.name), i);
  if (report.services) services = report.services;
  paint();
}
function esc(text) {
  return String(text).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
}
function row(cells, tag) { return "<tr>" + cells.map(c => `<${tag || "td"}>${esc(c)}</${tag || "td"}>`).join("") + "</tr>"; }
function ifaceTable(ends) {
  // one small table per interface: fields down the side, so counters never run off the panel
  let out = "";
  for (const [n, i] of ends) {
    const s = ifstate.get(key(n, i));
    out += `<table><tr><th colspan="2">${esc(key(n, i))}</th></tr>`;
    if (!s) { out += row(["state", "not read yet"]) + "</table>"; continue; }
    const st = s.stats || {};
    out += row(["addresses", (s.addresses || []).join(" ") || "—"]) + row(["admin / oper", `${s.admin_state} / ${s.operstate}`])
      + row(["carrier", s.carrier ? "yes" : "NO"]) + (s.shaping ? row(["shaping", s.shaping]) : "")
      + row(["rx / tx packets", `${st.rx_packets || 0} / ${st.tx_packets || 0}`])
      + row(["rx / tx bytes", `${st.rx_bytes || 0} / ${st.tx_bytes || 0}`])
      + row(["rx / tx drops", `${st.rx_dropped || 0} / ${st.tx_dropped || 0}`]) + "</table>";
  }
  return out;
}
function buttons(list) {
  if (!data.live) return "<p><i>static page: actions need <code>vethlab web</code></i></p>";
  return "<p>" + list.map(([label, action, target]) =>
    `<button data-action="${esc(action)}" data-target="${esc(target)}">${esc(label)}</button>`).join("") + "</p>";
}
function showPanel() {
  const side = document.getElementById("side");
  if (!selected) { side.innerHTML = "<p>Click a node or a link.</p>"; return; }
  let body = "";
  if (selected.type === "edge") {
    const edge = data.edges.find(e => e.id === selected.id);
    const labEnd = edge.ends.find(([n]) => n !== "host") || edge.ends[0];
    body = `<h3>link ${esc(edge.a)} — ${esc(edge.b)}</h3><p>${esc(edge.label.filter(Boolean).join(" · "))}</p>`
      + ifaceTable(edge.ends)
      + buttons([["down", "link-down", key(...labEnd)], ["up", "link-up", key(...labEnd)],
                 ["flap", "link-flap", key(...labEnd)]]);
  } else {
    const v = data.vertices.find(x => x.id === selected.id);
    const ends = [...ifstate.values()].filter(s => s.node === v.ident).map(s => [s.node, s.name]);
    const mine = services.filter(s => s.node === v.ident);
    body = `<h3>${esc(v.label.join(" · "))}</h3>` + (ends.length ? ifaceTable(ends) : "")
      + (mine.length ? "<h4>services</h4><table>" + row(["command", "pid", "state"], "th")
         + mine.map(s => row([s.command, s.pid, s.state])).join("") + "</table>" : "")
      + (v.kind === "node" ? buttons([["isolate", "node-isolate", v.ident], ["restore", "node-restore", v.ident]]) : "");
  }
  side.innerHTML = body + `<div id="message" data-status="${esc(lastMessage.status)}">${esc(lastMessage.text)}</div>`;
  for (const b of side.querySelectorAll("button")) b.addEventListener("click", () => act(b.dataset.action, b.dataset.target));
}
async function act(action, target) {
  const say = (text, status) => {
    lastMessage = {text, status};
    const msg = document.getElementById("message");
    if (msg) { msg.textContent = text; msg.dataset.status = status; }
  };
  say(action + " " + target + " …", "");
  const r = await fetch(base + "/action", {method: "POST", headers: {"Content-Type": "application/json",
    "X-Vethlab-Token": token || ""}, body: JSON.stringify({action, target})});
  const answer = await r.json().catch(() => ({}));
  say(r.ok ? `${action} ${target}: done` : `${action} ${target}: refused (${answer.error || r.status})`, String(r.status));
  refresh();
}
function select(type, id) {
  lastMessage = {text: "", status: ""};
  document.querySelectorAll("g.selected").forEach(el => el.classList.remove("selected"));
  selected = {type, id};
  document.getElementById(id).classList.add("selected");
  showPanel();
  refresh();
}
async function refresh() {
  if (!data.live || !selected) return;
  // only the nodes on screen: a 500-node lab is not re-read every second
  const nodes = selected.type === "node" ? [data.vertices.find(x => x.id === selected.id).ident]
    : [...new Set(data.edges.find(e => e.id === selected.id).ends.map(([n]) => n))];
  const url = base + "/status?" + nodes.map(n => "node=" + encodeURIComponent(n)).join("&");
  const r = await fetch(url);
  if (r.ok) { absorb(await r.json()); showPanel(); }
}
document.getElementById("labname").textContent = "lab " + data.lab;
for (const v of data.vertices) document.getElementById(v.id)?.addEventListener("click", () => select("node", v.id));
for (const e of data.edges) document.getElementById(e.id)?.addEventListener("click", () => select("edge", e.id));
if (data.snapshot) absorb(data.snapshot);
paint();
if (data.live) {
  const conn = document.getElementById("conn");
  fetch(base + "/status").then(r => r.json()).then(absorb);
  const events = new EventSource(base + "/events");
  conn.textContent = "● connecting";
  events.onerror = () => { conn.textContent = "● disconnected"; conn.className = "lost"; };
  events.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.event === "error") { conn.textContent = "● event stream failed: " + e.error; conn.className = "lost"; return; }
    if (e.event === "ready") {   // the server listens now: read the state once more, then trust the events
      fetch(base + "/status").then(r => r.json()).then(report => {
        absorb(report); conn.textContent = "● live"; conn.className = "live"; });
      return;
    }
    if (e.event !== "link") return;
    const k = key(e.node, e.ifname);
    const s = Object.assign({node: e.node, name: e.ifname}, ifstate.get(k) || {});
    Object.assign(s, {admin_state: e.admin, operstate: e.operstate, carrier: e.carrier});
    ifstate.set(k, s);
    document.body.dataset.lastEvent = e.time;
    paint();
    if (selected) showPanel();
  };
  setInterval(refresh, 1000);   // counters of the selected node or link only
} else {
  document.getElementById("conn").textContent = data.snapshot ? "snapshot" : "static";
}
"""
