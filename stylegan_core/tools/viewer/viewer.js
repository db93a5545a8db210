// The viewer page of `stylegan-run DIR serve`: reads the controls, asks /api/render for the image, shows it.
// One request at a time: a change while a render is on its way is remembered and sent when it arrives, so
// the server renders at most one image per page at a time and the last change always gets its image.
"use strict";

const $ = (id) => document.getElementById(id);
const clientId = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
  : String(Math.random()).slice(2) + String(Date.now());
let info = null;
let inflight = false;
let pending = false;
let playing = false;
let walkDir = 1;
let imageUrl = null;

function pad(seed) { return String(seed).padStart(4, "0"); }

function seed() {
  const v = parseInt($("seed-num").value, 10);
  return Number.isFinite(v) && v >= 0 ? v : 0;
}

// The query of the current controls (only what differs from the server's defaults is sent).
function query() {
  const q = new URLSearchParams();
  q.set("seed", String(seed()));
  q.set("trunc", $("trunc").value);
  if ($("cutoff").value !== "") q.set("cutoff", $("cutoff").value);
  q.set("noise", $("noise").value);
  if (info && info.condition === "class") q.set("class", $("class").value);
  if (info && info.condition === "text") q.set("text", $("text").value);
  if ($("mix-on").checked) {
    q.set("mix_seed", $("mix-seed").value || "0");
    q.set("mix_layers", $("mix-layers").value);
  }
  if ($("walk-on").checked) {
    q.set("walk_seed", $("walk-seed").value || "0");
    q.set("walk_t", $("walk-t").value);
  }
  if (info && info.output_transform) {
    for (const k of ["tx", "ty", "rotate"]) if (Number($(k).value) !== 0) q.set(k, $(k).value);
  }
  return q.toString();
}

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

async function render() {
  if (inflight) { pending = true; return; }
  inflight = true;
  pending = false;
  const q = query();
  const t0 = performance.now();
  try {
    const r = await fetch("/api/render?" + q, { headers: { "X-Client-Id": clientId } });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      status(msg, true);
    } else {
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      const img = $("image");
      img.src = url;
      await img.decode();
      if (imageUrl) URL.revokeObjectURL(imageUrl);
      imageUrl = url;
      const s = new URLSearchParams(q).get("seed");
      img.dataset.query = q;
      img.dataset.seed = s;
      $("download-image").href = url;
      $("download-image").download = "seed" + pad(s) + ".png";
      $("download-w").href = "/api/w?" + q;
      $("download-w").download = "seed" + pad(s) + "-w.safetensors";
      status("seed " + s + " rendered in " + Math.round(performance.now() - t0) + " ms", false);
    }
  } catch (e) {
    status("the server did not answer (" + e + ")", true);
  } finally {
    inflight = false;
    if (pending) render();
    else if (playing) requestAnimationFrame(stepWalk);
  }
}

function stepWalk() {
  if (!playing) return;
  const t = $("walk-t");
  let v = Number(t.value) + walkDir * Number(t.step);
  if (v >= 1 || v <= 0) { walkDir = -walkDir; v = Math.min(1, Math.max(0, v)); }
  t.value = String(v);
  $("walk-out").textContent = Number(t.value).toFixed(2);
  render();
}

function showValue(id) {
  const out = $(id + "-out");
  if (out) out.textContent = $(id).value;
}

function setup() {
  const d = info.defaults;
  $("model").textContent = (info.name || "generator") + " \u2014 " + info.source + " \u2014 " + info.img_resolution
    + "\u00d7" + info.img_resolution + ", " + info.img_channels + " channel(s), " + info.num_ws + " ws";
  $("trunc").value = String(d.trunc);
  showValue("trunc");
  if (d.cutoff !== null && d.cutoff !== undefined) $("cutoff").value = String(d.cutoff);
  $("noise").value = d.noise;
  $("cutoff").max = String(info.num_ws);
  $("mix-layers").value = "0-" + Math.min(6, info.num_ws - 1);
  if (info.condition === "class") {
    $("class-box").hidden = false;
    for (let k = 0; k < info.c_dim; k++) {
      const o = document.createElement("option");
      o.value = String(k);
      o.textContent = "class " + k;
      $("class").appendChild(o);
    }
    $("class").value = String(d["class"] !== null && d["class"] !== undefined ? d["class"] : 0);
  }
  if (info.condition === "text") {
    $("text-box").hidden = false;
    $("text").value = d.text || "";
  }
  $("transform-box").hidden = !info.output_transform;

  $("seed").addEventListener("input", () => { $("seed-num").value = $("seed").value; render(); });
  $("seed-num").addEventListener("change", () => {
    $("seed").value = String(Math.min(seed(), Number($("seed").max)));
    render();
  });
  for (const id of ["trunc", "tx", "ty", "rotate", "walk-t"]) {
    $(id).addEventListener("input", () => { showValue(id); if (id === "walk-t") $("walk-out").textContent = $(id).value; render(); });
  }
  for (const id of ["cutoff", "noise", "class", "mix-on", "mix-seed", "mix-layers", "walk-on", "walk-seed"]) {
    $(id).addEventListener("change", render);
  }
  $("text").addEventListener("keydown", (e) => { if (e.key === "Enter") render(); });
  $("walk-play").addEventListener("click", () => {
    playing = !playing;
    $("walk-play").textContent = playing ? "Stop" : "Play";
    if (playing) { $("walk-on").checked = true; if (!inflight) stepWalk(); }
  });
  $("transform-reset").addEventListener("click", () => {
    for (const k of ["tx", "ty", "rotate"]) { $(k).value = "0"; showValue(k); }
    render();
  });
  render();
}

fetch("/api/info").then((r) => r.json()).then((j) => { info = j; setup(); })
  .catch((e) => status("cannot read the generator's description (" + e + ")", true));
