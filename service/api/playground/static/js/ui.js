// Small DOM helpers shared by the tabs.

export function $(id) {
  return document.getElementById(id);
}

// el("figure", {className: "tile"}, child, "text"): an element with properties and children.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export function pngSrc(b64) {
  return `data:image/png;base64,${b64}`;
}

// Show an error (an ApiError's message is its problem's detail) in a tab's alert box; null hides it.
export function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = error.message || String(error);
  box.hidden = false;
}

// Run an action with its button disabled and its errors shown (the status line cleared); aborted
// requests are not errors.
export async function busy(button, errorBox, action, status = null) {
  showError(errorBox, null);
  button.disabled = true;
  try {
    await action();
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(errorBox, e);
    if (status) status.textContent = "";
  } finally {
    button.disabled = false;
  }
}

export function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

export function int(input) {
  return Number.parseInt(input.value, 10);
}

export function num(input) {
  return Number.parseFloat(input.value);
}

// A label <select>'s value: the class, null for the unconditional prior, or undefined for the
// model's label rule (the request leaves the label out, so each image's own seed picks it).
export function labelOf(select) {
  if (select.value === "rule") return undefined;
  return select.value === "" ? null : Number.parseInt(select.value, 10);
}

// A label as a person reads it: its index and, when the model names its classes, the name.
export function labelName(info, label) {
  if (label === null || label === undefined) return "none (unconditional)";
  const name = info.classes?.[label];
  return name ? `${label}: ${name}` : String(label);
}

export function resolutionName(r) {
  return `${r}\u00d7${r}`;
}
