// The demo page (docs/demo.md): the pretrained ST-CNN in the browser with onnxruntime-web.
//
// Files (docs/hooks.py generates all but this one and demo.css into the site's demo/ folder):
//   model.onnx  input "images" (N, 1, 42, 42) in [0, 1]; outputs "logits" (N, 10), "theta" (N, 2, 3)
//               and "transformed" (N, 1, 28, 28): stnkit.export.TRANSFORMER_OUTPUTS
//   demo.json   sizes, align_corners and the strip of canonical RTS test digits (8-bit pixels)
//   ort/        onnxruntime-web's WASM build, loaded by demo.md before this script (global `ort`)
//
// window.stnkitDemo.run(pixels) runs the model on C*H*W values in [0, 1] (row-major), shows the
// result and resolves to it; samplingGrid(theta) is the grid the page draws from (a subset of) it.
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
  const STROKE = 0.075; // stroke width as a fraction of the input's width (MNIST-like strokes)
  const GRID_STEP = 3; // draw every third row and column of the output grid

  const state = {
    config: null,
    session: null,
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
      transformed: Array.from(out.transformed.data), // row-major (1, 28, 28)
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

  // Draws a (h, w) image of values in [0, 1] onto a canvas, one flat-coloured block per pixel.
  function drawImage(canvas, values, h, w) {
    const small = document.createElement("canvas");
    small.width = w;
    small.height = h;
    const smallContext = small.getContext("2d");
    const image = smallContext.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const v = Math.round(255 * Math.min(1, Math.max(0, values[i])));
      image.data.set([v, v, v, 255], 4 * i);
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

  function drawBars(probabilities, label) {
    const bars = $("stnkit-demo-bars");
    bars.replaceChildren(
      ...probabilities.map((p, k) => {
        const row = document.createElement("div");
        row.className = "stnkit-demo-bar" + (k === label ? " stnkit-demo-bar--top" : "");
        row.dataset.probability = String(p);
        const name = document.createElement("span");
        name.className = "stnkit-demo-bar-label";
        name.textContent = state.config.classes[k];
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
    const [, h, w] = state.config.input_shape;
    drawImage(inputCanvas, state.pixels, h, w);
    const result = state.result;
    if (!result) return;
    drawGrid(result.theta);
    const [outH, outW] = state.config.output_size;
    drawImage(outputCanvas, result.transformed, outH, outW);
    drawBars(result.probabilities, result.label);
    const top = result.probabilities[result.label];
    $("stnkit-demo-prediction").textContent = `${state.config.classes[result.label]} (${(100 * top).toFixed(1)}%)`;
  }

  // --- Drawing ------------------------------------------------------------------------------

  function clearInk() {
    const context = state.ink.getContext("2d");
    context.clearRect(0, 0, state.ink.width, state.ink.height);
  }

  // pixels = max(base, the ink scaled down to the model's size), as MNIST: white on black.
  function composeInput() {
    const [, h, w] = state.config.input_shape;
    const small = document.createElement("canvas");
    small.width = w;
    small.height = h;
    const context = small.getContext("2d");
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.drawImage(state.ink, 0, 0, w, h);
    const alpha = context.getImageData(0, 0, w, h).data;
    for (let i = 0; i < h * w; i++) state.pixels[i] = Math.max(state.base[i], alpha[4 * i + 3] / 255);
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
    const context = state.ink.getContext("2d");
    const stroke = (from, to) => {
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
      if (!state.session) return;
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

  // --- The strip of test digits -----------------------------------------------------------------

  function selectStrip(index) {
    for (const button of $("stnkit-demo-strip").children) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.index) === index));
    }
  }

  function setUpStrip() {
    const strip = $("stnkit-demo-strip");
    const [, h, w] = state.config.input_shape;
    if (state.config.strip_missing) {
      strip.textContent = state.config.strip_missing;
      return;
    }
    for (const digit of state.config.strip) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "stnkit-demo-digit";
      button.dataset.index = String(digit.index);
      button.title = `test digit ${digit.index} (a ${digit.label})`;
      button.setAttribute("aria-label", button.title);
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      drawImage(canvas, digit.pixels.map((v) => v / 255), h, w);
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

  async function start() {
    const response = await fetch(new URL("demo.json", here));
    if (!response.ok) throw new Error(`demo.json: HTTP ${response.status}`);
    state.config = await response.json();
    const [, h, w] = state.config.input_shape;
    state.base = new Float32Array(inputLength());
    state.pixels = new Float32Array(inputLength());
    state.ink = document.createElement("canvas");
    state.ink.width = w * INK_SCALE;
    state.ink.height = h * INK_SCALE;
    render();
    setUpStrip();
    // WASM on one thread: no SharedArrayBuffer, so no cross-origin isolation headers are needed.
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = new URL("ort/", here).href;
    state.session = await ort.InferenceSession.create(new URL("model.onnx", here).href, {
      executionProviders: ["wasm"],
    });
    setUpDrawing();
    const first = state.config.strip[0];
    if (first) {
      selectStrip(first.index);
      await run(first.pixels.map((v) => v / 255));
    } else {
      await run(new Float32Array(inputLength()));
    }
    setStatus(`Ready: ${state.config.model}, running in this browser. Draw in the big square, or pick a digit below.`);
  }

  const ready = start().catch((error) => {
    reportError(error);
    throw error;
  });
  window.stnkitDemo = { ready, run, samplingGrid, state };
})();
