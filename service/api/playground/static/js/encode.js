// Encode: where the image's bits go (POST /encode): KL per latent layer by resolution, and the rate,
// distortion and ELBO in bits per dimension.

import { postForm } from "./api.js";
import { klChart, resolutionRows } from "./chart.js";
import { ImagePad } from "./imagepad.js";
import { $, busy, el, int, labelOf } from "./ui.js";

let model = null;
let pad = null;

export function init() {
  pad = new ImagePad($("encode-pad"), { mode: "draw" });
  $("encode-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
}

export function setModel(info) {
  model = info;
  pad.setModel(info);
  $("encode-chart").replaceChildren();
  $("encode-numbers").replaceChildren();
  $("encode-table").hidden = true;
}

async function run() {
  await busy($("encode-go"), $("encode-error"), async () => {
    const fields = { model: model.id, seed: int($("encode-seed")), image: await pad.png() };
    const label = model.conditional ? labelOf($("encode-label")) : null;
    if (label !== null) fields.label = label;
    const a = await postForm("/encode", fields);
    const resolutions = model.latent_shapes.map((s) => s[1]);
    const numbers = {
      "ELBO (bound on the NLL)": `${a.elbo_bits_per_dim.toFixed(4)} bits/dim`,
      "rate (KL)": `${a.rate_bits_per_dim.toFixed(4)} bits/dim (${a.kl_bits_total.toFixed(1)} bits)`,
      distortion: `${a.distortion_bits_per_dim.toFixed(4)} bits/dim`,
      dimensions: String(a.dims),
    };
    $("encode-numbers").replaceChildren(...Object.entries(numbers).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    $("encode-chart").replaceChildren(klChart(a.kl_bits, resolutions));
    $("encode-table").tBodies[0].replaceChildren(...resolutionRows(a.kl_bits, resolutions));
    $("encode-table").hidden = false;
  });
}
