// radscribe workstation page: plain JS + canvas. State lives in `S`; the server is the source of truth.
"use strict";

const S = {
  study: null,          // GET /api/studies/{id}
  etag: null,           // ETag of the saved version being edited ('"0"' before the first save): sent as If-Match
  me: null,             // GET /api/me
  template: null,       // GET /api/templates/{name}
  doc: null,            // the report document being edited (see serve/reports.py)
  image: new Image(),   // the rendered PNG (window/level applied server-side)
  view: { scale: 1, x: 0, y: 0 },   // image px -> canvas px: canvas = image * scale + offset
  wl: { center: 0.5, width: 1.0 },
  hover: null,          // key of the hovered field / finding ("field:vertebrae.count", "finding:alignment.curves:0")
  selected: null,       // {kind: "box"|"finding", path}
  adding: false,
  drag: null,
  dirty: false,
  drawn: [],            // boxes drawn by the last render (for tests and hit-testing): {key, label, rect, decision, highlighted}
};
const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

// ----------------------------------------------------------------------------------------- API
async function api(method, path, body, isForm, headers) {
  const options = { method, headers: { ...(headers || {}) }, credentials: "same-origin" };
  if (body !== undefined) {
    if (isForm) options.body = body;
    else { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (response.status === 401 && path !== "/api/session") showLogin();
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : data;
    const error = new Error(typeof detail === "string" ? detail : (detail && detail.message) || response.statusText);
    error.status = response.status; error.detail = detail; error.data = data;
    throw error;
  }
  const etag = response.headers.get("ETag");
  if (etag && data && typeof data === "object") data._etag = etag;
  return data;
}

// ----------------------------------------------------------------------------------------- session
function showLogin() {
  $("login").hidden = false;
  $("login-name").focus();
}

async function logIn(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("POST", "/api/session", { name: $("login-name").value, password: $("login-password").value });
    $("login-password").value = "";
    $("login").hidden = true;
    await start();
  } catch (error) { $("login-error").textContent = error.message; }
}

async function logOut() {
  await api("DELETE", "/api/session").catch(() => null);
  location.reload();
}

async function start() {
  S.me = await api("GET", "/api/me");
  $("user").textContent = `${S.me.name} (${S.me.role})`;
  $("logout").hidden = S.me.mode !== "accounts";
  await refreshStudies();
}

function status(message, isError) {
  const node = $("status");
  node.textContent = message;
  node.className = isError ? "error" : "";
}

// ----------------------------------------------------------------------------------------- studies
async function refreshStudies(selectId) {
  const page = await api("GET", "/api/studies?limit=200");
  const studies = page.items;
  const select = $("studies");
  select.innerHTML = '<option value="">— studies —</option>';
  for (const s of studies) {
    const option = document.createElement("option");
    option.value = s.id;
    const where = s.position ? `#${s.session}.${s.position} ${s.arm}` : new Date(s.created_at * 1000).toLocaleString();
    option.textContent = `${where} · ${s.status}${s.locked ? " (locked)" : ""}`;
    option.disabled = Boolean(s.locked);
    select.appendChild(option);
  }
  if (page.total > studies.length) select.appendChild(el("option", { value: "", disabled: true }, `… ${page.total - studies.length} older not listed`));
  if (selectId) select.value = selectId;
}

async function openStudy(id) {
  if (!id) return;
  const study = await api("GET", `/api/studies/${id}`);
  S.study = study;
  S.etag = study.etag;
  S.template = await api("GET", `/api/templates/${study.template}`);
  S.doc = study.document || blankDocument();
  S.selected = null; S.dirty = false;
  buildForm(); renderBoxList(); showIssues(study.errors || {}, study.incomplete || {});
  updateButtons();
  loadImage(true);
  status(`study ${id} · ${study.status}${study.arm ? " · " + study.arm : ""}`);
}

function blankDocument() {
  const fields = {}, findings = {};
  for (const section of S.template.sections)
    for (const f of section.fields) { if (f.kind === "findings") findings[f.id] = []; else fields[f.id] = null; }
  return { template: S.template.name, fields, findings, boxes: [], impression: "" };
}

function updateButtons() {
  const signed = S.study && S.study.status === "signed";
  const unassisted = S.study && S.study.arm === "unassisted";
  $("draft").disabled = !S.study || signed || unassisted;
  $("save").disabled = !S.study || signed;
  $("sign").disabled = !S.study || signed;
  for (const format of ["md", "json", "fhir"])
    $(`export-${format}`).href = S.study ? `/api/studies/${S.study.id}/export?format=${format}` : "#";
}

async function upload(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file);
  status("uploading…");
  try {
    const study = await api("POST", "/api/studies", form, true);
    await refreshStudies(study.id);
    await openStudy(study.id);
  } catch (error) { status(`upload refused: ${error.message}`, true); }
}

async function draft() {
  if (!S.study || $("draft").disabled) return;
  status("drafting… (queued for the model)");
  try {
    const result = await api("POST", `/api/studies/${S.study.id}/draft`);
    S.doc = result.document; S.dirty = true;
    S.study.status = S.study.status === "new" ? "drafted" : S.study.status;
    buildForm(); renderBoxList(); render();
    status(`draft ready (${Object.values(result.timings_s || {}).reduce((a, b) => a + b, 0).toFixed(1)} s model time), ${result.boxes.length} boxes`);
  } catch (error) {
    status(error.status === 503 ? "the model is busy; try again shortly" : `draft failed: ${error.message}`, true);
  }
}

async function save() {
  if (!S.study || $("save").disabled) return null;
  readForm();
  try {
    const saved = await api("PUT", `/api/studies/${S.study.id}/report`, S.doc, false, { "If-Match": S.etag });
    S.doc = saved.document; S.dirty = false; S.study.status = "saved"; S.etag = saved.etag;
    showIssues({}, saved.incomplete);
    status(`saved version ${saved.version}${Object.keys(saved.incomplete).length ? " (incomplete)" : ""}`);
    return saved;
  } catch (error) {
    if (error.status === 412) { showConflict(error.data.current); status("not saved: someone else saved first; merge below", true); return null; }
    if (error.detail && error.detail.errors) showIssues(error.detail.errors, error.detail.incomplete || {});
    status(`not saved: ${error.message}`, true);
    return null;
  }
}

// ----------------------------------------------------------------------------------------- conflicts
function parts(doc) {
  // The parts of a document a user chooses between when merging: each scalar field, each findings list, boxes, impression.
  const out = {};
  for (const [id, value] of Object.entries(doc.fields || {})) out[`fields.${id}`] = value;
  for (const [id, items] of Object.entries(doc.findings || {})) out[`findings.${id}`] = items;
  out.boxes = doc.boxes || [];
  out.impression = doc.impression || "";
  return out;
}

function summary(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) return `${value.length} item(s)`;
  return String(value);
}

function showConflict(current) {
  const mine = parts(S.doc), theirs = parts(current.document);
  const body = $("conflict-table").querySelector("tbody");
  body.innerHTML = "";
  const keys = [...new Set([...Object.keys(mine), ...Object.keys(theirs)])];
  for (const key of keys) {
    if (JSON.stringify(mine[key] ?? null) === JSON.stringify(theirs[key] ?? null)) continue;
    const name = `merge-${key}`;
    body.append(el("tr", { "data-part": key },
      el("td", {}, key),
      el("td", {}, el("label", {}, el("input", { type: "radio", name, value: "mine", checked: true }), " ", summary(mine[key]))),
      el("td", {}, el("label", {}, el("input", { type: "radio", name, value: "theirs" }), " ", summary(theirs[key])))));
  }
  $("conflict-who").textContent = `Version ${current.version} was saved by ${current.author} at ${new Date(current.saved_at * 1000).toLocaleTimeString()}.`;
  S.conflict = current;
  $("conflict").hidden = false;
}

function resolveConflict(takeAll) {
  const current = S.conflict;
  const merged = JSON.parse(JSON.stringify(current.document));
  if (!takeAll) {
    for (const row of $("conflict-table").querySelectorAll("tbody tr")) {
      const key = row.dataset.part;
      if (row.querySelector("input:checked").value !== "mine") continue;
      const value = parts(S.doc)[key];
      if (key.startsWith("fields.")) merged.fields[key.slice(7)] = value;
      else if (key.startsWith("findings.")) merged.findings[key.slice(9)] = value;
      else merged[key] = value;
    }
  }
  S.doc = merged; S.etag = current.etag; S.dirty = !takeAll; S.conflict = null;
  $("conflict").hidden = true;
  buildForm(); renderBoxList(); render();
  status(takeAll ? `now showing version ${current.version}` : `merged onto version ${current.version}: review, then save`);
}

async function sign() {
  if (!S.study || $("sign").disabled) return;
  readForm();
  if (S.dirty || S.etag === '"0"') { const saved = await save(); if (!saved) return; }
  try {
    // The ETag names exactly the version on screen: the server signs that one or answers 412.
    const signature = await api("POST", `/api/studies/${S.study.id}/sign`, undefined, false, { "If-Match": S.etag });
    S.study.status = "signed";
    updateButtons(); await refreshStudies(S.study.id);
    status(`signed by ${signature.signer} at ${new Date(signature.signed_at * 1000).toLocaleTimeString()}`);
  } catch (error) {
    if (error.status === 412) { showConflict(error.data.current); status("not signed: the report changed since you reviewed it", true); return; }
    if (error.detail && error.detail.incomplete) showIssues(error.detail.errors || {}, error.detail.incomplete);
    status(`not signed: ${error.message}`, true);
  }
}

// ----------------------------------------------------------------------------------------- form
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function input(spec, value, onchange) {
  let node;
  if (spec.kind === "enum") {
    node = el("select", {}, el("option", { value: "" }, "—"));
    for (const v of spec.values) node.append(el("option", { value: v, selected: v === value }, v));
  } else if (spec.kind === "number") {
    node = el("input", { type: "number", min: spec.min, max: spec.max, step: spec.integer ? 1 : Math.pow(10, -(spec.decimals || 1)), value: value ?? "" });
  } else {
    node = el("input", { type: "text", value: value ?? "" });
  }
  node.dataset.kind = spec.kind;
  node.addEventListener("change", () => { onchange(parseInput(node)); S.dirty = true; });
  return node;
}

function parseInput(node) {
  if (node.value === "") return null;
  if (node.dataset.kind === "number") { const n = Number(node.value); return Number.isFinite(n) ? n : node.value; }
  return node.value;
}

function hoverable(node, key) {
  node.dataset.key = key;
  node.addEventListener("mouseenter", () => { S.hover = key; render(); });
  node.addEventListener("mouseleave", () => { if (S.hover === key) { S.hover = null; render(); } });
  return node;
}

function decisionButtons(target, rerender) {
  return el("span", { class: "decision" },
    el("button", { type: "button", title: "accept (a)", onclick: () => { target.decision = "accepted"; S.dirty = true; rerender(); } }, "✓"),
    el("button", { type: "button", title: "reject (r)", onclick: () => { target.decision = "rejected"; S.dirty = true; rerender(); } }, "✗"),
    " " + target.decision);
}

function buildForm() {
  const form = $("form");
  form.innerHTML = "";
  for (const section of S.template.sections) {
    if (!section.fields.length) continue;  // the impression section: its own text area below
    const box = el("fieldset", {}, el("legend", {}, section.title));
    for (const spec of section.fields) {
      if (spec.kind === "findings") { box.append(findingsBlock(spec)); continue; }
      const row = hoverable(el("div", { class: "field", id: `field-${spec.id}` },
        el("label", { for: `input-${spec.id}`, title: spec.description || "" }, spec.label),
        el("span", {}, input(spec, S.doc.fields[spec.id], (v) => { S.doc.fields[spec.id] = v; }), spec.unit ? el("span", { class: "unit" }, spec.unit) : null)),
        `field:${spec.id}`);
      row.querySelector("input, select").id = `input-${spec.id}`;
      box.append(row);
    }
    form.append(box);
  }
  if (S.template.impression_field) {
    const area = el("textarea", { id: "impression", rows: 4 });
    area.value = S.doc.impression || "";
    area.addEventListener("input", () => { S.doc.impression = area.value; S.dirty = true; });
    form.append(el("fieldset", { id: "field-impression", class: "impression" }, el("legend", {}, "Impression"), area));
  }
}

function findingsBlock(spec) {
  const holder = el("div", { class: "findings", id: `findings-${spec.id}` }, el("div", {}, el("strong", {}, spec.label)));
  const items = S.doc.findings[spec.id] || (S.doc.findings[spec.id] = []);
  items.forEach((item, index) => {
    const key = `finding:${spec.id}:${index}`;
    const node = hoverable(el("div", { class: `finding ${item.decision}`, id: `finding-${spec.id}-${index}` },
      el("div", {}, `${spec.item_label} ${index + 1} `, decisionButtons(item, () => { buildForm(); render(); }),
        el("button", { type: "button", title: "draw this finding's box", onclick: () => startAdding({ finding: [spec.id, index] }) }, "+box"))), key);
    node.addEventListener("click", () => { S.selected = { kind: "finding", path: [spec.id, index] }; });
    for (const sub of spec.fields) {
      node.append(el("div", { class: "field", id: `field-${spec.id}[${index}].${sub.id}` }, el("label", {}, sub.label),
        el("span", {}, input(sub, item.values[sub.id], (v) => { item.values[sub.id] = v; }), sub.unit ? el("span", { class: "unit" }, sub.unit) : null)));
    }
    holder.append(node);
  });
  holder.append(el("button", { type: "button", onclick: () => {
    items.push({ values: Object.fromEntries(spec.fields.map((f) => [f.id, null])), boxes: [], decision: "accepted" });
    S.dirty = true; buildForm(); render();
  } }, `add ${spec.item_label.toLowerCase()}`));
  return holder;
}

function readForm() {
  // Inputs write through on change; the impression on input. Nothing else to collect.
  const area = $("impression");
  if (area) S.doc.impression = area.value;
}

function renderBoxList() {
  const list = $("boxes");
  list.innerHTML = "";
  S.doc.boxes.forEach((box, index) => {
    const key = box.field ? `field:${box.field}` : `box:${index}`;
    const item = hoverable(el("li", { class: `${box.decision}${isSelected("box", index) ? " selected" : ""}` },
      `${index + 1}. ${box.label}`, box.field ? el("span", { class: "unit" }, `→ ${box.field}`) : null,
      decisionButtons(box, () => { renderBoxList(); render(); })), key);
    item.addEventListener("click", () => { S.selected = { kind: "box", path: index }; renderBoxList(); render(); });
    list.append(item);
  });
}

function isSelected(kind, path) {
  return S.selected && S.selected.kind === kind && JSON.stringify(S.selected.path) === JSON.stringify(path);
}

function showIssues(errors, incomplete) {
  document.querySelectorAll(".field.invalid").forEach((n) => n.classList.remove("invalid"));
  document.querySelectorAll(".field .error").forEach((n) => n.remove());
  const lines = [];
  for (const [field, messages] of Object.entries(errors || {})) {
    lines.push(`${field}: ${messages.join(" ")}`);
    const row = document.getElementById(`field-${field}`);
    if (row) { row.classList.add("invalid"); row.append(el("div", { class: "error" }, messages.join(" "))); }
  }
  const blank = Object.keys(incomplete || {});
  if (blank.length) lines.push(`still blank: ${blank.join(", ")}`);
  $("issues").textContent = lines.join("\n");
}

// ----------------------------------------------------------------------------------------- viewer
function imageUrl() {
  const { center, width } = S.wl;
  return `/api/studies/${S.study.id}/images/0.png?center=${center.toFixed(3)}&width=${width.toFixed(3)}`;
}

let wlTimer = null;
function loadImage(fit) {
  clearTimeout(wlTimer);
  wlTimer = setTimeout(() => {
    const next = new Image();
    next.onload = () => { S.image = next; if (fit) fitView(); render(); canvas.dataset.loaded = "1"; };
    next.onerror = () => status("image could not be rendered", true);
    next.src = imageUrl();
  }, fit ? 0 : 120);  // window/level drags are debounced: one render per pause
}

function fitView() {
  resizeCanvas();
  const w = S.image.naturalWidth || 1, h = S.image.naturalHeight || 1;
  const scale = Math.min(canvas.width / w, canvas.height / h) * 0.95;
  S.view = { scale, x: (canvas.width - w * scale) / 2, y: (canvas.height - h * scale) / 2 };
  render();
}

function resizeCanvas() {
  const rect = canvas.getBoundingClientRect();
  if (canvas.width !== Math.round(rect.width) || canvas.height !== Math.round(rect.height)) {
    canvas.width = Math.round(rect.width); canvas.height = Math.round(rect.height);
  }
}

function zoom(factor, cx, cy) {
  cx = cx ?? canvas.width / 2; cy = cy ?? canvas.height / 2;
  const v = S.view;
  const scale = Math.min(40, Math.max(0.05, v.scale * factor));
  v.x = cx - (cx - v.x) * (scale / v.scale); v.y = cy - (cy - v.y) * (scale / v.scale); v.scale = scale;
  render();
}

function allBoxes() {
  // Every box with the key of what it illustrates, so hovering either side highlights both.
  const out = [];
  if (!S.doc) return out;
  for (const [field, items] of Object.entries(S.doc.findings))
    items.forEach((item, index) => item.boxes.forEach((box, b) => out.push({
      box, key: `finding:${field}:${index}`, path: ["finding", field, index, b], rejected: item.decision === "rejected" || box.decision === "rejected" })));
  S.doc.boxes.forEach((box, index) => out.push({ box, key: box.field ? `field:${box.field}` : `box:${index}`, path: ["box", index], rejected: box.decision === "rejected" }));
  return out;
}

function toCanvas(box) {
  const w = S.image.naturalWidth, h = S.image.naturalHeight, v = S.view;
  return [v.x + box.x_min * w * v.scale, v.y + box.y_min * h * v.scale, (box.x_max - box.x_min) * w * v.scale, (box.y_max - box.y_min) * h * v.scale];
}

function render() {
  resizeCanvas();
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  S.drawn = [];
  document.querySelectorAll(".hl").forEach((n) => n.classList.remove("hl"));
  if (S.hover) document.querySelectorAll(`[data-key="${CSS.escape(S.hover)}"]`).forEach((n) => n.classList.add("hl"));
  if (!S.study || !S.image.naturalWidth) return;
  const v = S.view;
  ctx.imageSmoothingEnabled = v.scale < 2;
  ctx.drawImage(S.image, v.x, v.y, S.image.naturalWidth * v.scale, S.image.naturalHeight * v.scale);
  for (const item of allBoxes()) {
    const rect = toCanvas(item.box);
    const highlighted = S.hover === item.key;
    const selected = item.path[0] === "box" && isSelected("box", item.path[1]);
    ctx.lineWidth = highlighted || selected ? 3 : 1.5;
    ctx.setLineDash(item.rejected ? [4, 4] : []);
    ctx.strokeStyle = item.rejected ? "rgba(255,90,90,.8)" : highlighted ? "#ffd84d" : item.key.startsWith("finding") ? "#ff9f40" : "#46d0ff";
    ctx.strokeRect(rect[0], rect[1], Math.max(rect[2], 2), Math.max(rect[3], 2));
    S.drawn.push({ key: item.key, label: item.box.label, rect, decision: item.rejected ? "rejected" : item.box.decision, highlighted });
  }
  ctx.setLineDash([]);
  if (S.drag && S.drag.mode === "add") {
    ctx.strokeStyle = "#7CFC00"; ctx.lineWidth = 2;
    ctx.strokeRect(S.drag.x0, S.drag.y0, S.drag.x1 - S.drag.x0, S.drag.y1 - S.drag.y0);
  }
}

function hit(x, y) {
  // The smallest box under the pointer wins (boxes nest: a curve holds vertebrae).
  let best = null;
  for (const item of allBoxes()) {
    const [bx, by, bw, bh] = toCanvas(item.box);
    if (x >= bx - 3 && x <= bx + bw + 3 && y >= by - 3 && y <= by + bh + 3 && (!best || bw * bh < best.area)) best = { ...item, area: bw * bh };
  }
  return best;
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function toImage(x, y) {
  const w = S.image.naturalWidth, h = S.image.naturalHeight, v = S.view;
  return [Math.min(1, Math.max(0, (x - v.x) / (w * v.scale))), Math.min(1, Math.max(0, (y - v.y) / (h * v.scale)))];
}

function startAdding(target) {
  S.adding = target || true;
  canvas.classList.add("adding");
  status("drag on the image to draw the box");
}

canvas.addEventListener("mousedown", (event) => {
  if (!S.study) return;
  canvas.focus();
  const [x, y] = canvasPoint(event);
  if (S.adding) { S.drag = { mode: "add", x0: x, y0: y, x1: x, y1: y }; return; }
  const found = hit(x, y);
  if (found && S.study.status !== "signed") {
    if (found.path[0] === "box") { S.selected = { kind: "box", path: found.path[1] }; renderBoxList(); }
    S.drag = { mode: "move", box: found.box, x, y, start: { ...found.box } };
  } else {
    S.drag = { mode: "pan", x, y, vx: S.view.x, vy: S.view.y };
  }
});

window.addEventListener("mousemove", (event) => {
  if (!S.study) return;
  const [x, y] = canvasPoint(event);
  if (!S.drag) {
    if (event.target !== canvas) return;
    const found = hit(x, y);
    const key = found ? found.key : null;
    if (key !== S.hover) { S.hover = key; render(); }
    return;
  }
  const d = S.drag;
  if (d.mode === "pan") { S.view.x = d.vx + x - d.x; S.view.y = d.vy + y - d.y; }
  else if (d.mode === "add") { d.x1 = x; d.y1 = y; }
  else if (d.mode === "move") {
    const w = S.image.naturalWidth * S.view.scale, h = S.image.naturalHeight * S.view.scale;
    let dx = (x - d.x) / w, dy = (y - d.y) / h;
    dx = Math.min(1 - d.start.x_max, Math.max(-d.start.x_min, dx));
    dy = Math.min(1 - d.start.y_max, Math.max(-d.start.y_min, dy));
    Object.assign(d.box, { x_min: d.start.x_min + dx, x_max: d.start.x_max + dx, y_min: d.start.y_min + dy, y_max: d.start.y_max + dy });
    d.moved = true;
  }
  render();
});

window.addEventListener("mouseup", () => {
  const d = S.drag;
  S.drag = null;
  if (!d) return;
  if (d.mode === "move" && d.moved) { d.box.source = "human"; if (d.box.decision === "pending") d.box.decision = "accepted"; S.dirty = true; }
  if (d.mode === "add") {
    const [ax, ay] = toImage(Math.min(d.x0, d.x1), Math.min(d.y0, d.y1));
    const [bx, by] = toImage(Math.max(d.x0, d.x1), Math.max(d.y0, d.y1));
    if (bx - ax > 0.002 && by - ay > 0.002) {
      const box = { label: $("box-label").value.trim() || "finding", x_min: ax, y_min: ay, x_max: bx, y_max: by, source: "human", decision: "accepted" };
      if (S.adding && S.adding.finding) {
        const [field, index] = S.adding.finding;
        S.doc.findings[field][index].boxes.push(box);
      } else {
        S.doc.boxes.push(box);
        S.selected = { kind: "box", path: S.doc.boxes.length - 1 };
      }
      S.dirty = true;
    }
    S.adding = false; canvas.classList.remove("adding");
    renderBoxList(); status("box added");
  }
  render();
});

canvas.addEventListener("wheel", (event) => {
  event.preventDefault();
  const [x, y] = canvasPoint(event);
  zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, x, y);
}, { passive: false });

// ----------------------------------------------------------------------------------------- shortcuts
function decideSelected(decision) {
  if (!S.selected) return;
  if (S.selected.kind === "box") { S.doc.boxes[S.selected.path].decision = decision; renderBoxList(); }
  else { const [field, index] = S.selected.path; S.doc.findings[field][index].decision = decision; buildForm(); }
  S.dirty = true; render();
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); sign(); return; }
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (event.key === "Escape") { document.activeElement.blur(); S.adding = false; canvas.classList.remove("adding"); return; }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    d: draft, s: save, "+": () => zoom(1.25), "=": () => zoom(1.25), "-": () => zoom(0.8), "0": fitView,
    w: () => { S.wl = { center: 0.5, width: 1.0 }; $("level").value = 0.5; $("width").value = 1; loadImage(false); },
    b: () => startAdding(), a: () => decideSelected("accepted"), r: () => decideSelected("rejected"),
    Delete: () => { if (S.selected && S.selected.kind === "box") { S.doc.boxes.splice(S.selected.path, 1); S.selected = null; S.dirty = true; renderBoxList(); render(); } },
  };
  if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
});

// ----------------------------------------------------------------------------------------- wiring
$("login-form").addEventListener("submit", logIn);
$("logout").addEventListener("click", logOut);
$("conflict-merge").addEventListener("click", () => resolveConflict(false));
$("conflict-theirs").addEventListener("click", () => resolveConflict(true));
$("upload").addEventListener("change", (event) => { if (event.target.files.length) upload(event.target.files); event.target.value = ""; });
$("studies").addEventListener("change", (event) => openStudy(event.target.value).catch((e) => status(e.message, true)));
$("draft").addEventListener("click", draft);
$("save").addEventListener("click", save);
$("sign").addEventListener("click", sign);
$("fit").addEventListener("click", fitView);
$("add-box").addEventListener("click", () => startAdding());
$("level").addEventListener("input", (e) => { S.wl.center = Number(e.target.value); if (S.study) loadImage(false); });
$("width").addEventListener("input", (e) => { S.wl.width = Number(e.target.value); if (S.study) loadImage(false); });
window.addEventListener("resize", render);
window.addEventListener("beforeunload", (event) => { if (S.dirty) { event.preventDefault(); event.returnValue = ""; } });
window.radscribe = { S, openStudy, draft, save, sign, render, refreshStudies };

updateButtons();
start().catch((error) => { if (error.status !== 401) status(error.message, true); });
