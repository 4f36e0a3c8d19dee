// Sample: a grid that forms coarse to fine through POST /sample/stream; a click on an image shows
// its seed and parameters, how it formed, and the curl command that draws it again.

import { apiKey, postEvents } from "./api.js";
import { $, busy, el, int, labelName, labelOf, num, pngSrc, randomSeed, resolutionName } from "./ui.js";

let model = null;
let controller = null;
let last = null; // the last request: {body, seeds, stages: [{event, resolution, layers, images}]}

export function init() {
  $("sample-seed").value = randomSeed();
  $("sample-shuffle").addEventListener("click", () => {
    $("sample-seed").value = randomSeed();
  });
  $("sample-temp").addEventListener("input", () => {
    const t = num($("sample-temp"));
    $("sample-temp-out").value = t.toFixed(2);
    for (const input of groupInputs()) {
      input.value = t;
      input.dispatchEvent(new Event("input"));
    }
  });
  $("sample-label").addEventListener("change", guidanceEnabled);
  $("sample-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  $("detail-copy").addEventListener("click", copyCurl);
}

export function setModel(info) {
  model = info;
  const resolutions = [...new Set(info.latent_shapes.map((s) => s[1]))];
  const t = num($("sample-temp"));
  $("sample-groups").replaceChildren(
    ...resolutions.map((r) => {
      const count = info.latent_shapes.filter((s) => s[1] === r).length;
      const id = `sample-temp-${r}`;
      const out = el("output", { htmlFor: id }, t.toFixed(2));
      const input = el("input", { id, type: "range", min: 0, max: 2, step: 0.05, value: t, dataset: { resolution: r } });
      input.addEventListener("input", () => {
        out.value = num(input).toFixed(2);
      });
      const label = el("label", { htmlFor: id }, `${resolutionName(r)} (${count} layer${count > 1 ? "s" : ""}) `, out);
      return el("div", { className: "field" }, label, input);
    }),
  );
  // The guidance fields start at the model's recommended weights: what /sample uses when left out.
  const guidance = info.sampling?.guidance;
  $("sample-guide-mean").value = guidance?.mean ?? 0;
  $("sample-guide-var").value = guidance?.variance ?? 0;
  guidanceEnabled();
  $("sample-grid").replaceChildren();
  $("sample-detail").hidden = true;
  $("sample-status").textContent = "";
}

function groupInputs() {
  return [...document.querySelectorAll("#sample-groups input")];
}

function guidanceEnabled() {
  const on = labelOf($("sample-label")) !== null; // a class given, or picked by the seeds' rule
  $("sample-guide-mean").disabled = !on;
  $("sample-guide-var").disabled = !on;
}

// One float when every layer has the same temperature, else one per latent layer.
function temperature() {
  const byResolution = Object.fromEntries(groupInputs().map((i) => [i.dataset.resolution, num(i)]));
  const layers = model.latent_shapes.map((s) => byResolution[s[1]]);
  return layers.every((t) => t === layers[0]) ? layers[0] : layers;
}

// Every option is sent as shown (guidance of 0 and an unconditional label included), so what the
// page shows is what was drawn, whatever the model's defaults; only the label rule leaves the label
// out, since that is how a request asks for it.
function request() {
  const body = { model: model.id, n: int($("sample-n")), seed: int($("sample-seed")), temperature: temperature() };
  if (!model.conditional) return body;
  const label = labelOf($("sample-label"));
  if (label !== undefined) body.label = label;
  if (label !== null) body.guidance = { mean: num($("sample-guide-mean")) || 0, variance: num($("sample-guide-var")) || 0 };
  return body;
}

async function run() {
  controller?.abort(); // a new sample replaces the one still streaming: the service stops its work
  controller = new AbortController();
  const { signal } = controller;
  const grid = $("sample-grid");
  const body = request();
  await busy($("sample-go"), $("sample-error"), async () => {
    last = { body, seeds: [], labels: [], stages: [] };
    grid.replaceChildren();
    delete grid.dataset.stage;
    $("sample-detail").hidden = true;
    $("sample-status").textContent = "Waiting for the first resolution\u2026";
    for await (const { event, data } of postEvents("/sample/stream", body, signal)) {
      last.seeds = data.data.map((d) => d.seed);
      last.labels = data.data.map((d) => d.label);
      last.stages.push({ event, resolution: data.resolution, layers: data.layers, images: data.data.map((d) => d.b64_json) });
      show(grid, event, data);
    }
  }, $("sample-status"));
}

function show(grid, event, data) {
  if (grid.children.length !== data.data.length) grid.replaceChildren(...data.data.map((_, i) => tile(i)));
  const final = event === "final";
  data.data.forEach((d, i) => {
    const img = grid.children[i].querySelector("img");
    img.src = pngSrc(d.b64_json);
    img.alt = `${final ? "Sample" : "Preview"}, seed ${d.seed}`;
  });
  grid.dataset.stage = final ? "final" : "preview";
  grid.dataset.resolution = data.resolution;
  $("sample-status").textContent = final
    ? `${data.data.length} samples, seeds ${last.seeds[0]}\u2013${last.seeds.at(-1)}. Click an image for its parameters.`
    : `Resolution ${resolutionName(data.resolution)}: ${data.layers} of ${data.num_layers} latent layers drawn (preview)`;
}

function tile(i) {
  const button = el("button", { type: "button", className: "tile", "aria-pressed": "false" }, el("img", { alt: "" }));
  button.addEventListener("click", () => select(i));
  return button;
}

function select(i) {
  for (const [j, b] of [...$("sample-grid").children].entries()) b.setAttribute("aria-pressed", String(i === j));
  const one = { ...last.body, n: 1, seed: last.seeds[i] };
  $("detail-seed").textContent = `seed ${one.seed}`;
  const params = { model: one.model, seed: one.seed, temperature: JSON.stringify(one.temperature) };
  if (model.conditional) {
    const label = last.labels[i];
    params.label = `${labelName(model, label)}${label !== null && one.label === undefined ? " (by its seed)" : ""}`;
  }
  if (one.guidance) params.guidance = `mean ${one.guidance.mean}, variance ${one.guidance.variance}`;
  $("detail-params").replaceChildren(...Object.entries(params).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  $("detail-stages").replaceChildren(
    ...last.stages.map((s) => {
      const what = s.event === "final" ? "Final image" : "Preview";
      const img = el("img", { src: pngSrc(s.images[i]), alt: `${what} after the ${resolutionName(s.resolution)} layers` });
      return el("figure", {}, el("div", { className: "tile" }, img), el("figcaption", {}, `${resolutionName(s.resolution)}, ${s.layers} layers`));
    }),
  );
  $("detail-curl").textContent = curl(one);
  $("detail-copied").textContent = "";
  $("sample-detail").hidden = false;
}

function curl(body) {
  const parts = [`curl -s ${location.origin}/sample`, "-H 'content-type: application/json'", "-H 'accept: image/png'"];
  if (apiKey()) parts.push('-H "Authorization: Bearer $VDVAE_API_KEY"');
  parts.push(`-d '${JSON.stringify(body)}'`, `-o sample-${body.seed}.png`);
  return parts.join(" \\\n     ");
}

async function copyCurl() {
  const text = $("detail-curl").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("detail-copied").textContent = "Copied.";
  } catch {
    const range = document.createRange(); // no clipboard access (not a secure context): select it
    range.selectNodeContents($("detail-curl"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("detail-copied").textContent = "Selected: copy it with Ctrl+C (or \u2318C).";
  }
}
