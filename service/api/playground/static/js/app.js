// The playground's entry point: the API key, the model picker and the tabs.

import { ApiError, apiKey, getJSON, setApiKey } from "./api.js";
import * as encode from "./encode.js";
import * as interpolate from "./interpolate.js";
import * as reconstruct from "./reconstruct.js";
import * as sample from "./sample.js";
import { $, el, labelName, resolutionName, showError } from "./ui.js";

const TABS = { sample, reconstruct, encode, interpolate };
let models = [];

function selectTab(name, focus = false) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
    if (on && focus) tab.focus();
  }
  history.replaceState(null, "", `#${name}`);
}

function bindTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const names = tabs.map((t) => t.id.slice(4));
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(names[i]));
    tab.addEventListener("keydown", (e) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(e.key in moves)) return;
      e.preventDefault();
      selectTab(names[(moves[e.key] + tabs.length) % tabs.length], true);
    });
  });
  const start = location.hash.slice(1);
  selectTab(names.includes(start) ? start : "sample");
}

// Every label picker offers the unconditional prior and each class; where a request may leave the
// label out (select[data-rule]) and the model has a label rule, that comes first: what the API
// does by default, each image's class from its own seed.
function fillLabels(info) {
  const rule = info.sampling?.label === "seed";
  for (const select of document.querySelectorAll(".label-select")) {
    const none = el("option", { value: "" }, "none (unconditional)");
    const classes = Array.from({ length: info.num_classes }, (_, c) => el("option", { value: String(c) }, labelName(info, c)));
    const byRule = rule && "rule" in select.dataset ? [el("option", { value: "rule" }, select.dataset.rule)] : [];
    select.replaceChildren(...byRule, none, ...classes);
    const field = select.closest("fieldset.cond") || select.closest(".field");
    field.hidden = !info.conditional;
  }
}

function useModel(id) {
  const info = models.find((m) => m.id === id);
  if (!info) return;
  const resolutions = [...new Set(info.latent_shapes.map((s) => s[1]))].map(resolutionName).join(", ");
  const family = info.family === "visual-vae" ? "visual-vae (Luhman & Luhman 2022)" : "VDVAE";
  $("model-info").textContent =
    `${family}: ${info.image_size}\u00d7${info.image_size}\u00d7${info.image_channels} images, ${info.num_layers} latent layers ` +
    `at ${resolutions}, ${info.conditional ? `${info.num_classes} classes` : "unconditional"}, ${info.dataset}.`;
  fillLabels(info);
  for (const tab of Object.values(TABS)) tab.setModel(info);
}

async function loadModels() {
  showError($("app-error"), null);
  try {
    // Every tab works on one model's latent layers: cascades and super-resolution models (which
    // need a low-resolution input) are left to the API.
    models = (await getJSON("/v1/models")).data.filter((m) => m.object !== "cascade" && !m.low_res);
  } catch (e) {
    const hint = e instanceof ApiError && e.status === 401 ? " Type the service's API key above." : "";
    showError($("app-error"), new Error(`${e.message}${hint}`));
    return;
  }
  const picker = $("model");
  const current = picker.value;
  picker.replaceChildren(...models.map((m) => el("option", { value: m.id }, m.id)));
  const chosen = models.find((m) => m.id === current) || models.find((m) => m.default) || models[0];
  if (chosen) {
    picker.value = chosen.id;
    useModel(chosen.id);
  }
}

function bindKey() {
  const input = $("api-key");
  input.value = apiKey();
  const apply = () => {
    setApiKey(input.value.trim());
    if (!models.length) loadModels();
  };
  input.addEventListener("change", apply);
  $("top-form").addEventListener("submit", (e) => {
    e.preventDefault(); // Enter in the key field applies it; the page stays
    apply();
  });
}

bindTabs();
bindKey();
for (const tab of Object.values(TABS)) tab.init();
$("model").addEventListener("change", (e) => useModel(e.target.value));
loadModels();
