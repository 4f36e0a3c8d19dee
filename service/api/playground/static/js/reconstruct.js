// Reconstruct: the drawn or uploaded image from its top k latent layers, for every k from 0 to all,
// and the bits each took from the image (POST /reconstruct, one request per depth; the service
// batches them into shared passes).

import { postForm } from "./api.js";
import { ImagePad } from "./imagepad.js";
import { $, busy, el, int, labelOf, num, pngSrc } from "./ui.js";

let model = null;
let pad = null;

export function init() {
  pad = new ImagePad($("recon-pad"), { mode: "draw" });
  $("recon-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
}

export function setModel(info) {
  model = info;
  pad.setModel(info);
  $("recon-row").replaceChildren();
  $("recon-status").textContent = "";
}

async function run() {
  const row = $("recon-row");
  await busy($("recon-go"), $("recon-error"), async () => {
    const image = await pad.png();
    const fields = { model: model.id, seed: int($("recon-seed")), temperature: num($("recon-temp")), image };
    const label = model.conditional ? labelOf($("recon-label")) : null;
    if (label !== null) fields.label = label;
    const depths = Array.from({ length: model.num_layers + 1 }, (_, k) => k);
    $("recon-status").textContent = `Reconstructing at ${depths.length} depths\u2026`;
    const t0 = performance.now();
    const answers = await Promise.all(depths.map((k) => postForm("/reconstruct", { ...fields, layers: k })));
    const input = el("figure", {}, el("div", { className: "tile" }, el("img", { src: URL.createObjectURL(image), alt: "The image sent" })), el("figcaption", {}, "input"));
    row.replaceChildren(
      input,
      ...answers.map((a, k) => {
        const bits = a.data[0].bits;
        const img = el("img", { src: pngSrc(a.data[0].b64_json), alt: `Reconstruction from the top ${k} latent layers, ${bits.toFixed(1)} bits` });
        return el("figure", {}, el("div", { className: "tile" }, img), el("figcaption", {}, `${k} layer${k === 1 ? "" : "s"}`, el("br"), `${bits.toFixed(1)} bits`));
      }),
    );
    const ms = Math.round(performance.now() - t0);
    $("recon-status").textContent = `${depths.length} reconstructions in ${ms} ms: 0 layers is a sample from the prior, ${model.num_layers} the full reconstruction.`;
  }, $("recon-status"));
}
