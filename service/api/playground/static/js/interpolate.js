// Interpolate: images between two seeds, two uploads or two drawings (POST /interpolate), through
// each latent layer's standardized prior noise.

import { postForm, postJSON } from "./api.js";
import { ImagePad } from "./imagepad.js";
import { $, busy, el, int, labelName, labelOf, num, pngSrc, randomSeed } from "./ui.js";

let model = null;
let pads = [];

function mode() {
  return document.querySelector('input[name="interp-mode"]:checked').value;
}

export function init() {
  pads = [
    new ImagePad($("interp-pad-a"), { title: "Start", mode: "upload", fixedMode: true }),
    new ImagePad($("interp-pad-b"), { title: "End", mode: "upload", fixedMode: true }),
  ];
  for (const radio of document.querySelectorAll('input[name="interp-mode"]')) radio.addEventListener("change", showMode);
  for (const button of document.querySelectorAll("#interp-seeds .shuffle")) {
    button.addEventListener("click", () => {
      $(button.dataset.target).value = randomSeed();
    });
  }
  $("interp-layers").addEventListener("input", layersText);
  $("interp-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  showMode();
}

export function setModel(info) {
  model = info;
  for (const pad of pads) pad.setModel(info);
  $("interp-layers").max = info.num_layers;
  $("interp-layers").value = info.num_layers;
  layersText();
  $("interp-row").replaceChildren();
}

function showMode() {
  const m = mode();
  $("interp-seeds").hidden = m !== "seeds";
  $("interp-images").hidden = m === "seeds";
  if (m !== "seeds") for (const pad of pads) pad.setMode(m);
}

function layersText() {
  const k = int($("interp-layers"));
  $("interp-layers-out").value = model && k === model.num_layers ? `all ${k}` : `${k}`;
}

async function run() {
  await busy($("interp-go"), $("interp-error"), async () => {
    const fields = {
      model: model.id,
      steps: int($("interp-steps")),
      layers: int($("interp-layers")),
      temperature: num($("interp-temp")),
      seed: int($("interp-seed")),
    };
    // Left out (undefined), the label follows the start seed; an image start has none, so a form
    // (where null cannot be sent) leaves out the unconditional label too.
    const label = model.conditional ? labelOf($("interp-label")) : undefined;
    $("interp-status").textContent = "Interpolating\u2026";
    const answer =
      mode() === "seeds"
        ? await postJSON("/interpolate", { ...fields, label, start: { seed: int($("interp-seed-a")) }, end: { seed: int($("interp-seed-b")) } })
        : await postForm("/interpolate", { ...fields, label, start: await pads[0].png(), end: await pads[1].png() });
    $("interp-row").replaceChildren(
      ...answer.data.map((d) =>
        el("figure", {}, el("div", { className: "tile" }, el("img", { src: pngSrc(d.b64_json), alt: `Step at t = ${d.t.toFixed(2)}` })), el("figcaption", {}, `t = ${d.t.toFixed(2)}`)),
      ),
    );
    const drawnAs = model.conditional ? `, label ${labelName(model, answer.label)}` : "";
    $("interp-status").textContent = `${answer.data.length} images; the top ${answer.layers} of ${model.num_layers} latent layers interpolated${drawnAs}.`;
  }, $("interp-status"));
}
