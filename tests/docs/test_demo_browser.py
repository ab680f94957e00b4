"""The demo page (docs/demo.md) in headless Chromium: it loads cleanly and computes what stnkit computes.

The built site (the session's ``site`` fixture) is served on 127.0.0.1 by Python's http.server in a
thread; Playwright drives Debian's Chromium (``make setup`` installs it; Playwright's own browser
downloads are never used). Without Chromium the tests skip and say why. Screenshots of the page, for a
person to look at, go to ``build/demo-screenshots/`` (gitignored).

The traffic-sign model is tested on a copy of the site whose demo files docs/demo_assets.py made with a
tiny random ``gtsrb-st-cnn`` registered as pretrained weights (tests/docs/demo_models.py), so the page's
switch and its sign model are tested whether or not ``gtsrb-st-cnn.gtsrb`` is shipped.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from tests.docs.demo_models import demo_models_with_tiny_signs, load_demo_assets, register_tiny_signs

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs playwright (dev extra): pip install -e '.[dev]'"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "build" / "demo-screenshots"
CHROMIUM_ENV = "STNKIT_CHROMIUM"  # another Chromium binary than the one on PATH
TOLERANCE = 1e-4
NUM_DIGITS = 5
NUM_SIGNS = 3
DIGIT_SHAPE = (1, 42, 42)
DESKTOP = {"width": 1200, "height": 1000}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_DIGIT = 4  # the strip digit in the screenshots: a tilted four, the grid turns with it


def _chromium() -> str:
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")
    if not path:
        pytest.skip(
            f"Chromium not found (no `chromium` on PATH, ${CHROMIUM_ENV} unset): the demo page's browser "
            "test needs Debian's chromium package; `make setup` installs it when run as root"
        )
    return path


class _Handler(SimpleHTTPRequestHandler):
    """Static files, quietly, with the types the page's module and WASM binary need."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    """``directory`` on a free port of 127.0.0.1; yields its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site on a free port of 127.0.0.1; yields its URL."""
    with _serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Problems:
    """What went wrong while the page ran: console errors, uncaught exceptions, failed requests."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # requests to anywhere but the test server

    def all(self) -> list[str]:
        return self.console + self.exceptions + self.requests + self.foreign


def _open_demo(browser: Any, server: str, viewport: dict[str, int]) -> tuple[Any, Problems]:
    """A new page on the demo, once its model ran on the first strip digit; and what went wrong."""
    page = browser.new_page(viewport=viewport)
    problems = Problems()
    page.on("console", lambda m: problems.console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.exceptions.append(str(error)))
    page.on("requestfailed", lambda r: problems.requests.append(f"{r.url}: {r.failure}"))
    page.on(
        "response",
        lambda r: problems.requests.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None,
    )
    page.on("request", lambda r: None if r.url.startswith(server) else problems.foreign.append(r.url))
    page.goto(f"{server}/demo/", wait_until="load")
    page.evaluate("() => window.stnkitDemo.ready")
    return page, problems


@pytest.fixture(scope="module")
def demo(browser: Any, server: str) -> Iterator[tuple[Any, Problems]]:
    page, problems = _open_demo(browser, server, DESKTOP)
    yield page, problems
    page.close()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from stnkit.models import create_model

    return create_model("st-cnn-affine", pretrained=True).eval()


def _page_models(site: Path) -> list[dict[str, Any]]:
    """demo.json's models, the page's first (the digits) first."""
    return json.loads((site / "demo" / "demo.json").read_text(encoding="utf-8"))["models"]


def _page_data(site: Path) -> dict[str, Any]:
    """The digit model's entry of demo.json."""
    digits = _page_models(site)[0]
    assert digits["key"] == "digits"
    return digits


def _strip(site: Path) -> list[dict[str, Any]]:
    """The page's test digits; a site built without the MNIST files has none (the page says why)."""
    data = _page_data(site)
    if not data["strip"]:
        pytest.skip(f"the site was built without the test digits: {data['strip_missing']}")
    return data["strip"]


def _torch_outputs(
    model: torch.nn.Module, pixels: torch.Tensor, shape: tuple[int, ...] = DIGIT_SHAPE
) -> dict[str, torch.Tensor]:
    """What stnkit computes for one (C, H, W) input: the plain forward pass and the transformer's."""
    x = pixels.reshape(1, *shape)
    with torch.no_grad():
        logits = model(x)
        transformed = model.stn(x)
    return {
        "probabilities": torch.softmax(logits.double(), dim=1)[0],
        "theta": model.stn.last_params[0].double(),  # (6,): the 2 x 3 matrix, row-major
        "transformed": transformed[0].flatten().double(),
    }


def _assert_page_matches_torch(result: dict[str, Any], expected: dict[str, torch.Tensor], what: str) -> None:
    assert result["label"] == int(expected["probabilities"].argmax()), what
    for name in ("probabilities", "theta", "transformed"):
        got = torch.tensor(result[name], dtype=torch.float64)
        assert got.shape == expected[name].shape, f"{what}: {name}"
        difference = float((got - expected[name]).abs().max())
        assert difference <= TOLERANCE, f"{what}: {name} differs from torch by {difference:.2e}"


def test_the_page_loads_without_errors(demo: tuple[Any, Problems], site: Path) -> None:
    page, problems = demo
    assert problems.all() == []
    assert page.inner_text("#stnkit-demo-status").startswith("Ready")
    assert len(page.locator(".stnkit-demo-bar").all()) == 10
    # The digits first; a switch between the models only when there is more than one.
    models = _page_models(site)
    assert page.evaluate("() => window.stnkitDemo.state.config.key") == "digits"
    assert page.locator("#stnkit-demo-models").is_visible() == (len(models) > 1)
    assert page.locator(".stnkit-demo-model").count() == (len(models) if len(models) > 1 else 0)
    data = _page_data(site)
    assert page.locator(".stnkit-demo-digit").count() == len(data["strip"])
    if not data["strip"]:
        assert page.inner_text("#stnkit-demo-strip") == data["strip_missing"]


def test_the_strip_is_the_canonical_rts_test_set(site: Path, shared_data: Path) -> None:
    from stnkit.data import TEST_SEED, make_loader

    strip = _strip(site)
    loader = make_loader("rts", split="test", batch_size=len(strip), limit=len(strip), seed=TEST_SEED)
    images, labels = next(iter(loader))
    assert [digit["label"] for digit in strip] == labels.tolist()
    pixels = torch.tensor([digit["pixels"] for digit in strip], dtype=torch.float32) / 255.0
    assert torch.equal(pixels, images.flatten(1))


def test_test_digits_give_what_stnkit_computes(
    demo: tuple[Any, Problems], site: Path, model: torch.nn.Module
) -> None:
    page, problems = demo
    strip = _strip(site)
    assert len(strip) >= NUM_DIGITS
    for digit in strip[:NUM_DIGITS]:
        pixels = torch.tensor(digit["pixels"], dtype=torch.float32) / 255.0
        result = page.evaluate("pixels => window.stnkitDemo.run(pixels)", pixels.tolist())
        what = f"test digit {digit['index']} (a {digit['label']})"
        _assert_page_matches_torch(result, _torch_outputs(model, pixels), what)
        # The grid the page draws from theta is stnkit's sampling grid (the convention's mapping).
        grid = page.evaluate("theta => window.stnkitDemo.samplingGrid(theta)", result["theta"])
        with torch.no_grad():
            params = model.stn.localize(pixels.reshape(1, 1, 42, 42))
            expected_grid = model.stn.grid(params, (1, 1, 42, 42))  # (1, 28, 28, 2)
        difference = float((torch.tensor(grid) - expected_grid.flatten()).abs().max())
        assert difference <= TOLERANCE, f"{what}: the sampling grid differs from stnkit's by {difference:.2e}"
        # The page shows it: the predicted class and the tallest bar.
        assert page.inner_text("#stnkit-demo-prediction").startswith(str(result["label"]))
        bars = page.locator(".stnkit-demo-bar").all()
        assert "stnkit-demo-bar--top" in (bars[result["label"]].get_attribute("class") or "")
    assert problems.all() == []


def _input_and_result(page: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """The page's model input and its last result, once the runs that drawing queued are done."""
    state = page.evaluate(
        "() => window.stnkitDemo.state.queue.then(() => ({"
        " pixels: Array.from(window.stnkitDemo.state.pixels), result: window.stnkitDemo.state.result }))"
    )
    return torch.tensor(state["pixels"], dtype=torch.float32), state["result"]


# A "7" in fractions of the drawing square: a bar along the top, then a stroke down and to the left.
SEVEN = [(0.3, 0.3), (0.7, 0.3), (0.6, 0.5), (0.45, 0.75)]


def test_a_drawing_is_the_input_the_model_sees(demo: tuple[Any, Problems], model: torch.nn.Module) -> None:
    page, problems = demo
    page.click("#stnkit-demo-clear")
    box = page.locator("#stnkit-demo-input").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + SEVEN[0][0] * box["width"], box["y"] + SEVEN[0][1] * box["height"])
    page.mouse.down()
    for x, y in SEVEN[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
    page.mouse.up()
    pixels, result = _input_and_result(page)
    assert 40 < int((pixels > 0.5).sum()) < 600  # ink, but not a filled square
    _assert_page_matches_torch(result, _torch_outputs(model, pixels), "the drawing")
    assert problems.all() == []


def test_a_finger_draws_on_a_phone(browser: Any, server: str, model: torch.nn.Module) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(f"{server}/demo/")
        page.evaluate("() => window.stnkitDemo.ready")
        page.click("#stnkit-demo-clear")
        page.locator("#stnkit-demo-input").scroll_into_view_if_needed()
        box = page.locator("#stnkit-demo-input").bounding_box()
        assert box is not None
        scroll = page.evaluate("() => window.scrollY")
        # Touch events as a phone sends them (the page sees pointer events of type "touch").
        cdp = context.new_cdp_session(page)
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in SEVEN]
        steps = [points[0]] + [
            (a[0] + (b[0] - a[0]) * t / 8, a[1] + (b[1] - a[1]) * t / 8)
            for a, b in itertools.pairwise(points)
            for t in range(1, 9)
        ]
        for kind, (x, y) in [("touchStart", steps[0])] + [("touchMove", p) for p in steps[1:]]:
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        pixels, result = _input_and_result(page)
        assert 40 < int((pixels > 0.5).sum()) < 600, "the finger drew nothing (or scrolled the page?)"
        assert page.evaluate("() => window.scrollY") == scroll  # drawing does not scroll the page
        _assert_page_matches_torch(result, _torch_outputs(model, pixels), "the finger drawing")
    finally:
        context.close()


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots_and_the_page_fits_the_screen(
    browser: Any, server: str, site: Path, name: str, viewport: dict[str, int]
) -> None:
    page, problems = _open_demo(browser, server, viewport)
    try:
        # Nothing wider than the screen (no sideways scrolling), and the drawing square fits on it.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
        box = page.locator("#stnkit-demo-input").bounding_box()
        assert box is not None and 200 <= box["width"] <= viewport["width"]
        strip = _page_data(site)["strip"]
        if strip:  # a tap on a strip digit makes it the input
            page.click(f'.stnkit-demo-digit[data-index="{SCREENSHOT_DIGIT}"]')
            shown = page.evaluate(
                "() => window.stnkitDemo.state.queue.then(() => Array.from(window.stnkitDemo.state.pixels))"
            )
            expected = torch.tensor(strip[SCREENSHOT_DIGIT]["pixels"], dtype=torch.float32) / 255.0
            assert torch.equal(torch.tensor(shown), expected)
            selector = f'.stnkit-demo-digit[data-index="{SCREENSHOT_DIGIT}"]'
            assert page.get_attribute(selector, "aria-pressed") == "true"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # The demo just below the theme's sticky header, as a reader scrolled to it sees it; the last
        # move is down, so the theme's "back to top" button (shown on scrolling up) stays hidden.
        page.evaluate("() => window.scrollTo(0, 0)")
        page.evaluate("() => window.scrollTo(0, document.getElementById('stnkit-demo').offsetTop - 60)")
        page.wait_for_timeout(300)  # the header's title changes with a transition on scrolling
        page.screenshot(path=str(SCREENSHOTS / f"demo-{name}.png"))
        if name == "desktop":  # the demo alone, for docs/img/demo.png
            page.locator("#stnkit-demo").screenshot(path=str(SCREENSHOTS / "demo-panels.png"))
        assert problems.all() == []
    finally:
        page.close()


@pytest.fixture(scope="module")
def sign_site(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, torch.nn.Module]]:
    """A copy of the site whose demo runs the digits and a tiny random sign model; and that model."""
    demo_assets = load_demo_assets()
    with pytest.MonkeyPatch.context() as monkeypatch:
        model = register_tiny_signs(monkeypatch, tmp_path_factory.mktemp("weights"))
        generated = demo_assets.site_files(REPO_ROOT, models=demo_models_with_tiny_signs(demo_assets))
    if "signs.onnx" not in generated:
        pytest.skip("no GTSRB test images for the sign model's strip: stnkit data download gtsrb")
    copy = tmp_path_factory.mktemp("sign-site") / "site"
    shutil.copytree(site, copy, copy_function=os.link)  # hard links: fast, and the site's files stay
    for name, source in generated.items():
        target = copy / "demo" / name
        target.unlink(missing_ok=True)  # replace the link, never write through it
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_text(source, encoding="utf-8")
    yield copy, model


def test_the_sign_model_gives_what_stnkit_computes_and_the_switch_works(
    browser: Any, sign_site: tuple[Path, torch.nn.Module], model: torch.nn.Module
) -> None:
    site, sign_model = sign_site
    signs = _page_models(site)[1]
    assert signs["key"] == "signs"
    shape = tuple(signs["input_shape"])
    with _serve(site) as url:
        page, problems = _open_demo(browser, url, DESKTOP)
        try:
            buttons = page.locator(".stnkit-demo-model")
            assert buttons.count() == 2 and page.locator("#stnkit-demo-models").is_visible()
            assert page.get_attribute('.stnkit-demo-model[data-key="digits"]', "aria-pressed") == "true"
            # The switch: the sign model, its strip of RGB images, no drawing.
            page.click('.stnkit-demo-model[data-key="signs"]')
            page.evaluate("() => window.stnkitDemo.state.queue")
            assert page.get_attribute('.stnkit-demo-model[data-key="signs"]', "aria-pressed") == "true"
            assert page.inner_text("#stnkit-demo-status").startswith(f"Ready: {signs['model']}")
            assert page.locator(".stnkit-demo-digit").count() == len(signs["strip"]) == 12
            assert not page.locator("#stnkit-demo-clear").is_visible()
            assert "stnkit-demo-draw" not in (page.get_attribute("#stnkit-demo-input", "class") or "")
            assert page.inner_text("#stnkit-demo-intro") == signs["intro"]
            page.click('.stnkit-demo-digit[data-index="1"]')  # a tap on a sign makes it the input
            shown, _ = _input_and_result(page)
            assert torch.equal(shown, torch.tensor(signs["strip"][1]["pixels"], dtype=torch.float32) / 255.0)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # the tiny model's picks are random
            page.locator("#stnkit-demo").screenshot(path=str(SCREENSHOTS / "demo-signs-panels.png"))
            for image in signs["strip"][:NUM_SIGNS]:
                pixels = torch.tensor(image["pixels"], dtype=torch.float32) / 255.0
                result = page.evaluate("pixels => window.stnkitDemo.run(pixels)", pixels.tolist())
                what = f"test sign {image['index']} ({signs['classes'][image['label']]})"
                _assert_page_matches_torch(result, _torch_outputs(sign_model, pixels, shape), what)
                grid = page.evaluate("theta => window.stnkitDemo.samplingGrid(theta)", result["theta"])
                with torch.no_grad():
                    x = pixels.reshape(1, *shape)
                    expected_grid = sign_model.stn.grid(sign_model.stn.localize(x), x.shape)
                assert float((torch.tensor(grid) - expected_grid.flatten()).abs().max()) <= TOLERANCE, what
                # The five most likely classes, most likely first, named.
                bars = page.locator(".stnkit-demo-bar")
                top5 = torch.tensor(result["probabilities"]).topk(5).indices.tolist()
                assert [int(bars.nth(k).get_attribute("data-class") or -1) for k in range(5)] == top5
                assert bars.count() == 5 and "stnkit-demo-bar--top" in (
                    bars.nth(0).get_attribute("class") or ""
                )
                assert page.inner_text("#stnkit-demo-prediction").startswith(
                    signs["classes"][result["label"]]
                )
            # And back: the digits, their drawing square and ten bars, computing what stnkit computes.
            page.click('.stnkit-demo-model[data-key="digits"]')
            page.evaluate("() => window.stnkitDemo.state.queue")
            assert page.locator(".stnkit-demo-bar").count() == 10
            assert page.locator("#stnkit-demo-clear").is_visible()
            digit = _page_data(site)["strip"][0]
            pixels = torch.tensor(digit["pixels"], dtype=torch.float32) / 255.0
            shown, result = _input_and_result(page)
            assert torch.equal(shown, pixels)
            _assert_page_matches_torch(
                result, _torch_outputs(model, pixels), "the first digit after the switch"
            )
            assert problems.all() == []
        finally:
            page.close()
