// vaekit playground: plain JavaScript, no build step, no network beyond this server.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
let info = null;
let z = [];
let scatterData = null;
let pickTarget = "a";

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `request failed (${response.status})`);
  return data;
}

// Decoding requests are coalesced: while one is in flight, slider moves only update z; when it
// returns, the latest z is sent. The picture follows the hand without a queue of stale requests.
let decodeInFlight = false;
let decodePending = false;
async function requestDecode() {
  if (decodeInFlight) { decodePending = true; return; }
  decodeInFlight = true;
  try {
    do {
      decodePending = false;
      const data = await api("/api/decode", { z: z.slice() });
      $("decoded").src = data.image;
      $("decoded").dataset.version = String(Number($("decoded").dataset.version || 0) + 1);
      showError("");
    } while (decodePending);
  } catch (err) {
    showError(err.message);
  } finally {
    decodeInFlight = false;
  }
}

function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  for (const dim of info.dimensions) {
    const row = document.createElement("div");
    row.className = "slider" + (dim.active ? "" : " inactive");
    const label = document.createElement("label");
    label.textContent = `z${dim.index}` + (dim.active ? "" : " (off)");
    label.title = `activity ${dim.activity}`;
    const input = document.createElement("input");
    const [low, high] = dim.range;  // [-3, 3] under a prior; an autoencoder's codes' own spread
    Object.assign(input, { type: "range", min: low, max: high, step: (high - low) / 600, value: z[dim.index] });
    input.dataset.dim = dim.index;
    input.setAttribute("aria-label", `latent dimension ${dim.index}`);
    const output = document.createElement("output");
    output.textContent = z[dim.index].toFixed(2);
    input.addEventListener("input", () => {
      z[dim.index] = Number(input.value);
      output.textContent = Number(input.value).toFixed(2);
      requestDecode();
    });
    row.append(label, input, output);
    box.append(row);
  }
}

function setZ(values) {
  z = values.slice();
  for (const input of document.querySelectorAll("#sliders input")) {
    const v = z[Number(input.dataset.dim)];
    input.value = Math.max(Number(input.min), Math.min(Number(input.max), v));
    input.nextSibling.textContent = v.toFixed(2);
  }
  requestDecode();
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// One swatch per class present, named by the dataset (digits, or an image folder's subfolders).
function drawLegend() {
  const present = [...new Set(scatterData.labels)].sort((a, b) => a - b);
  const name = (label) => scatterData.class_names[label] ?? String(label);
  $("scatter-legend").innerHTML = present.length > 20 ? "" : present.map((label) =>
    `<span class="swatch" style="background:${COLOURS[label % 10]}"></span>${escapeHtml(name(label))}`).join(" ");
}

function drawScatter() {
  const canvas = $("scatter");
  const ctx = canvas.getContext("2d");
  const pts = scatterData.points;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const bounds = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 12;
  scatterData.toCanvas = (p) => [
    pad + (p[0] - bounds[0]) / (bounds[1] - bounds[0] || 1) * (canvas.width - 2 * pad),
    canvas.height - pad - (p[1] - bounds[2]) / (bounds[3] - bounds[2] || 1) * (canvas.height - 2 * pad),
  ];
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  pts.forEach((p, i) => {
    const [cx, cy] = scatterData.toCanvas(p);
    ctx.fillStyle = COLOURS[scatterData.labels[i] % 10];
    ctx.fillRect(cx - 1.5, cy - 1.5, 3, 3);
  });
  ctx.fillStyle = "#444";
  ctx.fillText(`${scatterData.axes[0]} →`, canvas.width - 60, canvas.height - 2);
  ctx.fillText(`↑ ${scatterData.axes[1]}`, 2, 10);
}

// Runs one request of the page: on success the error line clears, on failure it says why.
async function guarded(action) {
  try {
    await action();
    showError("");
  } catch (err) {
    showError(err.message);
  }
}

function showTest(index, moveSliders = true) {
  return guarded(async () => {
    const data = await api(`/api/test/${index}`);
    $("test-index").value = index;
    $("test-original").src = data.image;
    $("test-reconstruction").src = data.reconstruction;
    const bound = info && info.no_bound ?  // a model with no bound (an autoencoder): its reconstruction alone
      `<tr><td>log p(x|z)</td><td>${data.reconstruction_term.toFixed(2)} nats (no ELBO)</td></tr>` :
      `<tr><td>ELBO</td><td>${data.elbo.toFixed(2)} nats</td></tr>` +
      `<tr><td>reconstruction</td><td>${data.reconstruction_term.toFixed(2)}</td></tr>` +
      `<tr><td>KL</td><td>${data.kl.toFixed(2)}</td></tr>`;
    $("test-terms").innerHTML = `<tr><td>class</td><td>${escapeHtml(data.class_name)}</td></tr>` + bound;
    if (moveSliders) setZ(data.z);
  });
}

function interpolate() {
  return guarded(async () => {
    const data = await api("/api/interpolate", {
      a: Number($("interp-a").value), b: Number($("interp-b").value),
      steps: Number($("interp-steps").value), mode: $("interp-mode").value,
    });
    $("interp-strip").innerHTML = data.images.map((src) => `<img src="${src}" alt="interpolation step">`).join("");
  });
}

function sample() {
  return guarded(async () => {
    const data = await api("/api/samples", {
      n: 24, temperature: Number($("temperature").value), seed: Number($("seed").value),
    });
    $("samples").innerHTML = data.images.map((src) => `<img src="${src}" alt="prior sample">`).join("");
  });
}

async function start() {
  try {
    info = await api("/api/info");
    $("model-info").textContent = `${info.description}, ${info.test_images} test images`;
    z = info.start.slice();  // a typical point of the prior (z = 0 for N(0, I))
    buildSliders();
    requestDecode();
    showTest(0, false);  // the test-image panel shows image 0 from the start; the sliders stay put
    scatterData = await api("/api/scatter");
    $("scatter-note").textContent =
      `Posterior means of ${scatterData.points.length} test images (${scatterData.axes.join(" vs ")}), ` +
      "coloured by class. Click a point to decode it.";
    drawScatter();
    drawLegend();
    $("samples-panel").hidden = !info.has_samples;  // a model with no prior (an autoencoder) has none
    if (info.has_manifold) {
      $("manifold-panel").hidden = false;
      const m = await api("/api/manifold?n=12");
      $("manifold").innerHTML = m.rows.flat().map((src) => `<img src="${src}" alt="manifold cell">`).join("");
      $("manifold").style.maxWidth = `${12 * 58}px`;
    }
  } catch (err) {
    showError(err.message);
  }
}

$("scatter").addEventListener("click", (event) => {
  if (!scatterData) return;
  const rect = event.target.getBoundingClientRect();
  const scale = event.target.width / rect.width;
  const x = (event.clientX - rect.left) * scale, y = (event.clientY - rect.top) * scale;
  let best = 0, bestDistance = Infinity;
  scatterData.points.forEach((p, i) => {
    const [cx, cy] = scatterData.toCanvas(p);
    const d = (cx - x) ** 2 + (cy - y) ** 2;
    if (d < bestDistance) { bestDistance = d; best = i; }
  });
  $(pickTarget === "a" ? "interp-a" : "interp-b").value = best;
  pickTarget = pickTarget === "a" ? "b" : "a";
  showTest(best);
});
$("zero").addEventListener("click", () => setZ(info.start.slice()));
$("show-test").addEventListener("click", () => showTest(Number($("test-index").value)));
$("interpolate").addEventListener("click", interpolate);
$("sample").addEventListener("click", sample);
start();
