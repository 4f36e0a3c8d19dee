// An image to send: drawn on a canvas or uploaded, either way turned into a PNG of the model's
// size and channels (the service takes nothing else), and shown as it will be sent.

import { encodePng, toPixels } from "./png.js";
import { el } from "./ui.js";

const PAD_PIXELS = 256; // about the canvas's own resolution: a whole number of pixels per model pixel
const STROKE = 2.4; // brush width in model pixels: about a handwritten digit's stroke

let padCount = 0;

export class ImagePad {
  // container: an element to fill; options: {title, mode: "draw" | "upload", fixedMode}
  constructor(container, { title = "", mode = "draw", fixedMode = false } = {}) {
    const id = `pad${++padCount}`;
    this.size = 32;
    this.channels = 1;
    this.drawn = false;
    this.upload = null; // a decoded <img> of the chosen file
    this.mode = mode;

    this.canvas = el("canvas", { width: PAD_PIXELS, height: PAD_PIXELS, "aria-label": `${title || "Image"}: drawing area; draw with a mouse, pen or finger` });
    this.color = el("input", { type: "color", value: "#ffffff", id: `${id}-color` });
    this.colorField = el("label", { className: "field", htmlFor: `${id}-color` }, "Brush colour", this.color);
    this.clear = el("button", { type: "button", className: "secondary" }, "Clear");
    this.file = el("input", { type: "file", accept: "image/png,image/jpeg,image/*", id: `${id}-file` });
    this.fileField = el("label", { className: "field", htmlFor: `${id}-file` }, "Image file (scaled to the model's size in this page)", this.file);
    this.preview = el("img", { className: "preview", alt: `${title || "Image"} as sent`, hidden: true });
    this.previewNote = el("span", { className: "note" }, "");

    const radios = ["draw", "upload"].map((m) => {
      const input = el("input", { type: "radio", name: `${id}-mode`, value: m, checked: m === mode });
      input.addEventListener("change", () => this.setMode(m));
      return el("label", {}, input, m === "draw" ? " draw" : " upload");
    });
    this.modes = el("div", { className: "pad-modes", role: "radiogroup", "aria-label": `${title || "Image"} source` }, ...radios);
    this.modes.hidden = fixedMode;

    this.drawSide = el("div", { className: "pad-side" }, this.clear, this.colorField);
    this.uploadSide = el("div", { className: "pad-side" }, this.fileField);
    const sent = el("div", { className: "pad-side" }, el("span", { className: "note" }, "Sent as:"), this.preview, this.previewNote);
    container.replaceChildren(
      ...(title ? [el("p", { className: "pad-title" }, title)] : []),
      this.modes,
      this.canvas,
      el("div", { className: "pad-side" }, this.drawSide, this.uploadSide, sent),
    );
    this.bindDrawing();
    this.clear.addEventListener("click", () => this.reset());
    this.file.addEventListener("change", () => this.load());
    this.reset();
    this.setMode(mode);
  }

  setModel(info) {
    this.size = info.image_size;
    this.channels = info.image_channels;
    const side = this.size * Math.max(1, Math.round(PAD_PIXELS / this.size)); // sized to the model
    this.canvas.width = this.canvas.height = side;
    this.colorField.hidden = this.channels === 1;
    this.reset();
    if (this.upload) this.refresh();
  }

  setMode(mode) {
    this.mode = mode;
    for (const input of this.modes.querySelectorAll("input")) input.checked = input.value === mode;
    this.canvas.hidden = mode !== "draw";
    this.drawSide.hidden = mode !== "draw";
    this.uploadSide.hidden = mode !== "upload";
    this.refresh();
  }

  reset() {
    const ctx = this.canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.drawn = false;
    this.refresh();
  }

  bindDrawing() {
    let last = null;
    const at = (e) => {
      const box = this.canvas.getBoundingClientRect();
      return [((e.clientX - box.left) / box.width) * this.canvas.width, ((e.clientY - box.top) / box.height) * this.canvas.height];
    };
    const line = (from, to) => {
      const ctx = this.canvas.getContext("2d");
      ctx.strokeStyle = this.channels === 1 ? "#fff" : this.color.value;
      ctx.lineWidth = (STROKE * this.canvas.width) / this.size;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...from);
      ctx.lineTo(...to);
      ctx.stroke();
      this.drawn = true;
    };
    this.canvas.addEventListener("pointerdown", (e) => {
      this.canvas.setPointerCapture?.(e.pointerId);
      last = at(e);
      line(last, last);
    });
    this.canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const p = at(e);
      line(last, p);
      last = p;
    });
    const end = () => {
      if (last) this.refresh();
      last = null;
    };
    this.canvas.addEventListener("pointerup", end);
    this.canvas.addEventListener("pointercancel", end);
  }

  async load() {
    const file = this.file.files[0];
    this.upload = null;
    if (file) {
      const img = new Image();
      img.src = URL.createObjectURL(file);
      try {
        await img.decode();
        this.upload = img;
      } catch {
        this.previewNote.textContent = `${file.name} is not an image this browser can read`;
      }
    }
    this.refresh();
  }

  // The PNG that will be sent, or an Error saying what is missing.
  async png() {
    if (this.mode === "draw") {
      if (!this.drawn) throw new Error("draw something first (or switch to upload)");
      return encodePng(toPixels(this.canvas, this.size, this.channels), this.size, this.size, this.channels);
    }
    if (!this.upload) throw new Error("choose an image file first");
    return encodePng(toPixels(this.upload, this.size, this.channels), this.size, this.size, this.channels);
  }

  async refresh() {
    const ready = this.mode === "draw" ? this.drawn : Boolean(this.upload);
    if (!ready) {
      this.preview.hidden = true;
      if (this.mode === "draw") this.previewNote.textContent = "nothing drawn yet";
      else if (!this.file.files[0]) this.previewNote.textContent = "no file chosen";
      return;
    }
    const blob = await this.png();
    if (this.preview.src) URL.revokeObjectURL(this.preview.src);
    this.preview.src = URL.createObjectURL(blob);
    this.preview.hidden = false;
    this.previewNote.textContent = `${this.size}\u00d7${this.size} ${this.channels === 1 ? "grey-scale" : "RGB"} PNG`;
  }
}
