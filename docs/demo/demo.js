// The demo page (docs/demo.md): the shipped pretrained ST-CNNs in the browser with onnxruntime-web.
//
// Files (docs/hooks.py generates all but this one and demo.css into the site's demo/ folder):
//   demo.json   {"models": [...]}: per model (docs/demo_assets.py's DEMO_MODELS that are shipped) its
//               sizes, align_corners, class names, how the page shows it and its strip of canonical
//               test images (8-bit pixels, C*H*W); with more than one, the page shows a switch
//   KEY.onnx    per model: input "images" (N, C, H, W) in [0, 1]; outputs "logits" (N, classes),
//               "theta" (N, 2, 3) and "transformed" (N, C, H_out, W_out): stnkit.export.TRANSFORMER_OUTPUTS
//   ort/        onnxruntime-web's WASM build, loaded by demo.md before this script (global `ort`)
//
// window.stnkitDemo.run(pixels) runs the current model on C*H*W values in [0, 1] (row-major, channel
// by channel), shows the result and resolves to it; select(key) switches the model (and runs it on its
// first strip image); samplingGrid(theta) is the grid the page draws from (a subset of) it.
// tests/docs/test_demo_browser.py drives the page through them.
(function () {
  "use strict";

  const here = new URL(".", document.currentScript.src); // the site's demo/ folder
  const root = document.getElementById("stnkit-demo");
  if (!root) return;

  const $ = (id) => document.getElementById(id);
  const inputCanvas = $("stnkit-demo-input");
  const outputCanvas = $("stnkit-demo-output");
  const status = $("stnkit-demo-status");
  const INK_SCALE = 8; // the drawing is made at 8x the model's resolution, then scaled down
  const INPUT_SIZE = 336; // about the canvases' resolution: a whole number of blocks per model pixel
  const OUTPUT_SIZE = 224;
  const STROKE = 0.075; // stroke width as a fraction of the input's width (MNIST-like strokes)
  const GRID_STEP = 3; // draw every third row and column of the output grid

  const state = {
    models: [], // demo.json's models
    config: null, // the current model's entry of demo.json
    session: null, // its inference session
    sessions: new Map(), // key -> Promise of the model's inference session, made on first use
    base: null, // Float32Array(C*H*W): a picked digit, or zeros
    pixels: null, // Float32Array(C*H*W): the model's input (base and ink)
    ink: null, // canvas of the strokes, INK_SCALE times the input size
    result: null,
    queue: Promise.resolve(),
    liveQueued: false,
  };

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("stnkit-demo-status--error", Boolean(isError));
  }

  // --- Running the model -------------------------------------------------------------------

  function inputLength() {
    const [c, h, w] = state.config.input_shape;
    return c * h * w;
  }

  function softmax(logits) {
    const top = Math.max(...logits);
    const exps = logits.map((v) => Math.exp(v - top));
    const total = exps.reduce((a, b) => a + b, 0);
    return exps.map((v) => v / total);
  }

  async function infer(pixels) {
    const images = new ort.Tensor("float32", Float32Array.from(pixels), [1, ...state.config.input_shape]);
    const out = await state.session.run({ images });
    const logits = Array.from(out.logits.data);
    const probabilities = softmax(logits);
    const label = probabilities.indexOf(Math.max(...probabilities));
    return {
      label,
      probabilities,
      logits,
      theta: Array.from(out.theta.data), // row-major 2 x 3, output -> input, normalised
      transformed: Array.from(out.transformed.data), // row-major (C, H_out, W_out)
    };
  }

  // One inference at a time (a session runs one request); jobs run in order.
  function enqueue(job) {
    const done = state.queue.then(job);
    state.queue = done.catch(() => undefined);
    return done;
  }

  async function runAndShow(pixels) {
    const result = await infer(pixels);
    state.result = result;
    render();
    return result;
  }

  // While drawing: at most one run waits, and it takes the pixels as they are when it starts.
  function scheduleLive() {
    if (state.liveQueued) return;
    state.liveQueued = true;
    enqueue(() => {
      state.liveQueued = false;
      return runAndShow(state.pixels.slice());
    }).catch(reportError);
  }

  // --- Pictures ------------------------------------------------------------------------------

  const to8bit = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));

  // Draws a (c, h, w) image of values in [0, 1] (grey: c = 1, RGB: c = 3) onto a canvas, one
  // flat-coloured block per pixel.
  function drawImage(canvas, values, c, h, w) {
    const small = document.createElement("canvas");
    small.width = w;
    small.height = h;
    const smallContext = small.getContext("2d");
    const image = smallContext.createImageData(w, h);
    const plane = c >= 3 ? h * w : 0; // offset of the green and blue planes
    for (let i = 0; i < h * w; i++) {
      image.data.set([to8bit(values[i]), to8bit(values[plane + i]), to8bit(values[2 * plane + i]), 255], 4 * i);
    }
    smallContext.putImageData(image, 0, 0);
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(small, 0, 0, canvas.width, canvas.height);
  }

  // Normalised input coordinate -> canvas coordinate, for a side of n pixels drawn `size` wide.
  function toCanvas(v, n, size) {
    const pixel = state.config.align_corners ? ((v + 1) / 2) * (n - 1) + 0.5 : ((v + 1) / 2) * n;
    return (pixel * size) / n;
  }

  // Normalised output coordinate of pixel centre j of n, and of the outer edges.
  function centre(j, n) {
    return state.config.align_corners ? (2 * j) / (n - 1) - 1 : (2 * j + 1) / n - 1;
  }
  function edge(n) {
    return state.config.align_corners ? 1 + 1 / (n - 1) : 1;
  }

  // theta (row-major 2 x 3) maps an output position (x, y) to the input position it samples, both
  // normalised (docs/convention.md).
  function inputPosition(theta, x, y) {
    return [theta[0] * x + theta[1] * y + theta[2], theta[3] * x + theta[4] * y + theta[5]];
  }

  // The sampling grid: the input position of each output pixel centre, row-major (H_out, W_out, 2),
  // as stnkit's SpatialTransformer.grid gives it.
  function samplingGrid(theta) {
    const [outH, outW] = state.config.output_size;
    const grid = [];
    for (let i = 0; i < outH; i++) {
      for (let j = 0; j < outW; j++) grid.push(...inputPosition(theta, centre(j, outW), centre(i, outH)));
    }
    return grid;
  }

  function drawGrid(theta) {
    const [, h, w] = state.config.input_shape;
    const [outH, outW] = state.config.output_size;
    const context = inputCanvas.getContext("2d");
    const size = inputCanvas.width;
    const map = (x, y) => {
      const [u, v] = inputPosition(theta, x, y);
      return [toCanvas(u, w, size), toCanvas(v, h, size)];
    };
    const line = (a, b) => {
      context.beginPath();
      context.moveTo(...map(...a));
      context.lineTo(...map(...b));
      context.stroke();
    };
    const ex = edge(outW);
    const ey = edge(outH);
    context.lineWidth = Math.max(1, size / 300);
    context.strokeStyle = "rgba(80, 200, 255, 0.75)";
    for (let j = 1; j < outW; j += GRID_STEP) line([centre(j, outW), -ey], [centre(j, outW), ey]);
    for (let i = 1; i < outH; i += GRID_STEP) line([-ex, centre(i, outH)], [ex, centre(i, outH)]);
    context.lineWidth = Math.max(2, size / 110);
    context.strokeStyle = "rgb(255, 170, 40)";
    context.beginPath();
    const corners = [[-ex, -ey], [ex, -ey], [ex, ey], [-ex, ey]].map((p) => map(...p));
    context.moveTo(...corners[0]);
    corners.slice(1).forEach((p) => context.lineTo(...p));
    context.closePath();
    context.stroke();
    context.fillStyle = "rgb(255, 170, 40)";
    context.beginPath();
    context.arc(...corners[0], Math.max(4, size / 45), 0, 2 * Math.PI);
    context.fill();
  }

  // One bar per class in label order, or (top_classes) the most likely few, most likely first.
  function drawBars(probabilities, label) {
    const bars = $("stnkit-demo-bars");
    const top = state.config.top_classes;
    const classes = probabilities.map((p, k) => k);
    const shown = top ? classes.sort((a, b) => probabilities[b] - probabilities[a]).slice(0, top) : classes;
    bars.classList.toggle("stnkit-demo-bars--names", state.config.classes.some((name) => name.length > 2));
    bars.replaceChildren(
      ...shown.map((k) => {
        const p = probabilities[k];
        const row = document.createElement("div");
        row.className = "stnkit-demo-bar" + (k === label ? " stnkit-demo-bar--top" : "");
        row.dataset.class = String(k);
        row.dataset.probability = String(p);
        const name = document.createElement("span");
        name.className = "stnkit-demo-bar-label";
        name.textContent = state.config.classes[k];
        name.title = state.config.classes[k];
        const track = document.createElement("span");
        track.className = "stnkit-demo-bar-track";
        const fill = document.createElement("span");
        fill.className = "stnkit-demo-bar-fill";
        fill.style.width = `${(100 * p).toFixed(2)}%`;
        track.append(fill);
        const value = document.createElement("span");
        value.className = "stnkit-demo-bar-value";
        value.textContent = `${(100 * p).toFixed(1)}%`;
        row.append(name, track, value);
        return row;
      }),
    );
  }

  function render() {
    const [c, h, w] = state.config.input_shape;
    drawImage(inputCanvas, state.pixels, c, h, w);
    const result = state.result;
    if (!result) return;
    drawGrid(result.theta);
    const [outH, outW] = state.config.output_size;
    drawImage(outputCanvas, result.transformed, c, outH, outW);
    drawBars(result.probabilities, result.label);
    const top = result.probabilities[result.label];
    $("stnkit-demo-prediction").textContent = `${state.config.classes[result.label]} (${(100 * top).toFixed(1)}%)`;
  }

  // --- Drawing ------------------------------------------------------------------------------

  function clearInk() {
    const context = state.ink.getContext("2d");
    context.clearRect(0, 0, state.ink.width, state.ink.height);
  }

  // pixels = max(base, the ink scaled down to the model's size) in every channel, as MNIST: white on black.
  function composeInput() {
    const [c, h, w] = state.config.input_shape;
    const small = document.createElement("canvas");
    small.width = w;
    small.height = h;
    const context = small.getContext("2d");
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.drawImage(state.ink, 0, 0, w, h);
    const alpha = context.getImageData(0, 0, w, h).data;
    for (let k = 0; k < c * h * w; k++) {
      state.pixels[k] = Math.max(state.base[k], alpha[4 * (k % (h * w)) + 3] / 255);
    }
  }

  function inkPoint(event) {
    const rect = inputCanvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * state.ink.width,
      ((event.clientY - rect.top) / rect.height) * state.ink.height,
    ];
  }

  function setUpDrawing() {
    let last = null;
    const stroke = (from, to) => {
      const context = state.ink.getContext("2d"); // the current model's ink canvas
      context.lineCap = "round";
      context.lineJoin = "round";
      context.strokeStyle = "#fff";
      context.lineWidth = STROKE * state.ink.width;
      context.beginPath();
      context.moveTo(...from);
      context.lineTo(...to);
      context.stroke();
      composeInput();
      render();
      scheduleLive();
    };
    inputCanvas.addEventListener("pointerdown", (event) => {
      if (!state.session || !state.config.drawing) return;
      event.preventDefault();
      inputCanvas.setPointerCapture(event.pointerId);
      last = inkPoint(event);
      selectStrip(null);
      stroke(last, last);
    });
    inputCanvas.addEventListener("pointermove", (event) => {
      if (last === null) return;
      const point = inkPoint(event);
      stroke(last, point);
      last = point;
    });
    const end = () => {
      last = null;
    };
    inputCanvas.addEventListener("pointerup", end);
    inputCanvas.addEventListener("pointercancel", end);
    $("stnkit-demo-clear").addEventListener("click", () => {
      selectStrip(null);
      run(new Float32Array(inputLength())).catch(reportError);
    });
  }

  // --- The strip of test images ------------------------------------------------------------------

  function selectStrip(index) {
    for (const button of $("stnkit-demo-strip").children) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.index) === index));
    }
  }

  function setUpStrip() {
    const strip = $("stnkit-demo-strip");
    const [c, h, w] = state.config.input_shape;
    $("stnkit-demo-strip-caption").textContent = state.config.strip_caption;
    strip.replaceChildren();
    if (state.config.strip_missing) {
      strip.textContent = state.config.strip_missing;
      return;
    }
    for (const digit of state.config.strip) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "stnkit-demo-digit";
      button.dataset.index = String(digit.index);
      button.title = `test ${state.config.strip_noun} ${digit.index} (${state.config.classes[digit.label]})`;
      button.setAttribute("aria-label", button.title);
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      drawImage(canvas, digit.pixels.map((v) => v / 255), c, h, w);
      button.append(canvas);
      button.addEventListener("click", () => {
        selectStrip(digit.index);
        run(digit.pixels.map((v) => v / 255)).catch(reportError);
      });
      strip.append(button);
    }
  }

  // --- The page's API -------------------------------------------------------------------------------

  // Replace the input by `pixels` (C*H*W values in [0, 1]), run the model, show and return the result.
  function run(pixels) {
    const expected = inputLength();
    if (!pixels || pixels.length !== expected) {
      return Promise.reject(new Error(`run() expects ${expected} pixel values in [0, 1], got ${pixels ? pixels.length : pixels}`));
    }
    state.base = Float32Array.from(pixels);
    state.pixels = Float32Array.from(pixels);
    clearInk();
    render();
    const snapshot = state.pixels.slice();
    return enqueue(() => runAndShow(snapshot));
  }

  function reportError(error) {
    setStatus(`The demo stopped: ${error.message || error}`, true);
    console.error(error);
  }

  // --- The models and the switch between them ------------------------------------------------------

  function loadSession(config) {
    if (!state.sessions.has(config.key)) {
      const session = ort.InferenceSession.create(new URL(config.onnx, here).href, {
        executionProviders: ["wasm"],
      });
      state.sessions.set(config.key, session);
      session.catch(() => state.sessions.delete(config.key)); // a later switch tries again
    }
    return state.sessions.get(config.key);
  }

  // Sizes, captions, drawing and strip of the current model (state.config).
  function showModel() {
    const config = state.config;
    const [, h, w] = config.input_shape;
    const [outH, outW] = config.output_size;
    const resize = (canvas, n, rows, columns) => {
      const scale = Math.max(1, Math.round(n / Math.max(rows, columns)));
      canvas.width = columns * scale;
      canvas.height = rows * scale;
      canvas.style.aspectRatio = `${columns} / ${rows}`;
    };
    resize(inputCanvas, INPUT_SIZE, h, w);
    resize(outputCanvas, OUTPUT_SIZE, outH, outW);
    inputCanvas.classList.toggle("stnkit-demo-draw", config.drawing);
    inputCanvas.setAttribute(
      "aria-label",
      `The ${h}x${w} input${config.drawing ? ": draw here;" : ";"} the sampling grid is drawn over it`,
    );
    outputCanvas.setAttribute("aria-label", `The transformer's ${outH}x${outW} output`);
    $("stnkit-demo-input-caption").textContent = `Input ${h}x${w} and the sampling grid`;
    $("stnkit-demo-output-caption").textContent = `The transformer's output, ${outH}x${outW}`;
    $("stnkit-demo-clear").hidden = !config.drawing;
    $("stnkit-demo-intro").textContent = config.intro;
    state.ink = document.createElement("canvas");
    state.ink.width = w * INK_SCALE;
    state.ink.height = h * INK_SCALE;
    setUpStrip();
    for (const button of $("stnkit-demo-models").children) {
      button.setAttribute("aria-pressed", String(button.dataset.key === config.key));
    }
  }

  function readyText() {
    const config = state.config;
    const hint = config.drawing
      ? `Draw in the big square, or pick a ${config.strip_noun} below.`
      : `Pick a ${config.strip_noun} below.`;
    return `Ready: ${config.model}, running in this browser. ${hint}`;
  }

  // Switch to the model `key` of demo.json: load it, show it, run it on its first strip image (or
  // zeros) and resolve to that result. Queued after the runs asked for before it.
  function select(key) {
    const config = state.models.find((model) => model.key === key);
    if (!config) {
      const keys = state.models.map((model) => model.key).join(", ");
      return Promise.reject(new Error(`select() expects one of ${keys}, got ${key}`));
    }
    return enqueue(async () => {
      if (config === state.config) return state.result;
      setStatus(`Loading ${config.model}…`);
      const session = await loadSession(config);
      state.config = config;
      state.session = session;
      state.result = null;
      showModel();
      const first = config.strip[0];
      selectStrip(first ? first.index : null);
      state.base = first ? Float32Array.from(first.pixels, (v) => v / 255) : new Float32Array(inputLength());
      state.pixels = state.base.slice();
      const result = await runAndShow(state.pixels.slice());
      setStatus(readyText());
      return result;
    });
  }

  // One button per model, shown only when there is a choice.
  function setUpSwitch() {
    const buttons = $("stnkit-demo-models");
    if (state.models.length < 2) return;
    for (const model of state.models) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "stnkit-demo-model";
      button.dataset.key = model.key;
      button.textContent = model.label;
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => select(model.key).catch(reportError));
      buttons.append(button);
    }
    buttons.hidden = false;
  }

  async function start() {
    const response = await fetch(new URL("demo.json", here));
    if (!response.ok) throw new Error(`demo.json: HTTP ${response.status}`);
    state.models = (await response.json()).models;
    setUpSwitch();
    // WASM on one thread: no SharedArrayBuffer, so no cross-origin isolation headers are needed.
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = new URL("ort/", here).href;
    setUpDrawing();
    await select(state.models[0].key);
  }

  const ready = start().catch((error) => {
    reportError(error);
    throw error;
  });
  window.stnkitDemo = { ready, run, select, samplingGrid, state };
})();
