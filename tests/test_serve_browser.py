"""``stylegan-run DIR serve`` in a real browser: Debian's Chromium, headless, driven by Playwright.

The server runs as the CLI starts it (a subprocess on 127.0.0.1, a free port); the page is loaded, the seed
slider moved with the keyboard, and the images the page receives and shows are compared with
``stylegan-run DIR generate``'s PNGs for those seeds. Chromium comes from Debian's package (``.ci/run``
installs it); without it the browser test is skipped, saying so, except in CI (STYLEGAN_CI=1), where it fails.
Set STYLEGAN_VIEWER_SCREENSHOT=path to keep the page's screenshot (the README's is made that way).
"""
from __future__ import annotations

import io
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from stylegan_core.cli import build as build_cli  # noqa: E402
from stylegan_core.cli import run as run_cli  # noqa: E402

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium on a machine without network access: no background connections, a fresh profile (Playwright's)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def browser_or_skip():
    why = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "playwright is not installed (pip install 'stylegan-core[test]')"
    if why is None and not Path(CHROMIUM).is_file():
        why = "no chromium (apt-get install chromium; .ci/run installs it)"
    if why is not None:
        if os.environ.get("STYLEGAN_CI") == "1":
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(reason=why)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The embedded default (StyleGAN2, 32x32 digits) as built: its model.safetensors weights."""
    out = tmp_path_factory.mktemp("serve") / "build"
    assert build_cli.main(["-o", str(out), "--set", "metrics=[]"]) == 0
    return out


@pytest.fixture(scope="module")
def server(run_dir):
    """``stylegan-run DIR serve --port 0`` in a subprocess; yields its address."""
    proc = subprocess.Popen([str(BIN / "stylegan-run"), str(run_dir), "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url, seen, deadline = None, [], time.monotonic() + 180
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            seen.append(line)
            if " at http://127.0.0.1:" in line:
                url = line.split(" at ", 1)[1].split()[0]
    try:
        assert url is not None, f"no address printed: {''.join(seen)}{proc.stderr.read() if proc.poll() is not None else ''}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def generated(run_dir, tmp_path_factory):
    """``stylegan-run DIR generate --seeds 0-2``: seed -> PNG bytes."""
    out = tmp_path_factory.mktemp("generated")
    assert run_cli.main([str(run_dir), "generate", "--seeds", "0-2", "--outdir", str(out)]) == 0
    return {s: (out / f"seed{s:04d}.png").read_bytes() for s in range(3)}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


SHOWN_PIXELS = """() => {
    const img = document.getElementById('image');
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
}"""


RECEIVED_BYTES = """async () => {
    const r = await fetch(document.getElementById('image').src);
    return Array.from(new Uint8Array(await r.arrayBuffer()));
}"""


def received(page) -> bytes:
    """The PNG the page received and shows (read back from the image's blob URL)."""
    return bytes(page.evaluate(RECEIVED_BYTES))


def shown(page) -> np.ndarray:
    """The image the page shows, as the browser decoded it (grey: the R channel of RGBA)."""
    rgba = np.array(page.evaluate(SHOWN_PIXELS), dtype=np.uint8)
    n = int(round((rgba.size // 4) ** 0.5))
    return rgba.reshape(n, n, 4)[:, :, 0]


def test_viewer_in_chromium_matches_generate(server, generated, run_dir, tmp_path):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.goto(server)
            page.wait_for_function("document.getElementById('image').dataset.seed === '0'")
            assert received(page) == generated[0]
            assert np.array_equal(shown(page), pixels(generated[0]))

            # the seed slider, moved as a person would: focus it and press the right arrow key
            page.locator("#seed").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function("document.getElementById('image').dataset.seed === '1'")
            body = received(page)
            assert body == generated[1] and body != generated[0]  # the image changed, to generate's for seed 1
            assert np.array_equal(shown(page), pixels(generated[1]))
            assert page.locator("#status").text_content().startswith("seed 1 rendered")
            assert page.locator("#download-image").get_attribute("download") == "seed0001.png"
            if os.environ.get("STYLEGAN_VIEWER_SCREENSHOT"):
                page.screenshot(path=os.environ["STYLEGAN_VIEWER_SCREENSHOT"])

            # style mixing; its w, downloaded from the page, renders the same image through generate --projected-w
            page.locator("#mix-seed").fill("2")
            page.locator("#mix-layers").fill("0-3")
            page.locator("#mix-on").check()
            page.wait_for_function("document.getElementById('image').dataset.query.includes('mix_seed=2')")
            mixed_png = received(page)
            assert mixed_png not in (generated[1], generated[2])
            with page.expect_download() as dl:
                page.locator("#download-w").click()
            w_file = tmp_path / dl.value.suggested_filename
            dl.value.save_as(w_file)
            assert w_file.name == "seed0001-w.safetensors"
            assert run_cli.main([str(run_dir), "generate", "--projected-w", str(w_file), "--outdir",
                                 str(tmp_path / "from_w")]) == 0
            assert (tmp_path / "from_w" / "projected_w.png").read_bytes() == mixed_png

            # a bad request is shown to the person, in one line, and the last good image stays
            page.locator("#mix-layers").fill("0-99")
            page.locator("#mix-layers").dispatch_event("change")
            page.wait_for_function("document.getElementById('status').classList.contains('error')")
            assert "out of range" in page.locator("#status").text_content()
            assert np.array_equal(shown(page), pixels(mixed_png))
        finally:
            browser.close()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_bad_requests_get_400_and_one_line(server):
    for query, expect in [("seed=abc", "seed: Input should be a valid integer"),
                          ("seed=1&class=3", "class: the generator is unconditional"),
                          ("seed=1&sed=2", "sed: unknown parameter"),
                          ("seed=1&tx=0.5", "need a generator with an output transform"),
                          ("seed=1&trunc=inf", "trunc:"),
                          ("seed=99999999999", "seed: Input should be less than or equal to 4294967295")]:
        status, body = get(f"{server}api/render?{query}")
        assert status == 400, (query, body)
        msg = json.loads(body)["error"]
        assert expect in msg and "\n" not in msg, (query, msg)
    status, body = get(f"{server}api/info")
    info = json.loads(body)
    assert status == 200 and info["img_resolution"] == 32 and info["condition"] == "none"


DEFAULTS = {"trunc": 1.0, "cutoff": None, "noise": "const", "class": None, "text": None}


def generator(body: str):
    """The generator of the embedded default with ``body`` merged on top, never trained."""
    import textwrap

    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import DEFAULT_SPEC, load_spec_text

    ps = load_plugins()
    spec = load_spec_text(f"extends: {DEFAULT_SPEC}\n" + textwrap.dedent(body), registry=ps.registry)
    return build_model(spec, ps.registry, parts={"G"}).G


def test_one_render_per_client_at_a_time():
    """A second request of a client whose render is still queued or running is refused (Busy: 429 from the
    app); other clients queue behind it on the one render worker."""
    from stylegan_core.tools.serve import Busy, Viewer

    v = Viewer(generator("metrics: []\ndata: {type: core.digits, resolution: 8}\n"), DEFAULTS)
    release = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "a"

    fa = v.submit("alice", slow)
    assert started.wait(10)
    with pytest.raises(Busy):
        v.submit("alice", lambda: "again")
    fb = v.submit("bob", lambda: "b")  # queued behind alice's
    assert not fb.done()
    release.set()
    assert fa.result(10) == "a" and fb.result(10) == "b"
    assert v.submit("alice", lambda: "next").result(10) == "next"  # free again once it arrived
    v.close()


def test_stylegan3_output_transform_moves_the_image_and_is_restored():
    """The equivariance view: translation/rotation set the StyleGAN3 input's transform for one render only."""
    from stylegan_core.tools.serve import RenderParams, Viewer

    v = Viewer(generator("""
        metrics: []
        data: {type: core.digits, resolution: 16}
        generator:
          mapping: {type: stylegan3.mapping, z_dim: 16, num_layers: 2}
          synthesis: {type: stylegan3.synthesis, w_dim: 16, channel_base: 256, channel_max: 8, num_layers: 4,
                      num_fp16_res: 0, conv_clamp: null}
        """), DEFAULTS)
    assert v.info()["output_transform"]
    plain = v.render(RenderParams(seed=3))
    moved = v.render(RenderParams(seed=3, tx=0.25))
    turned = v.render(RenderParams(seed=3, rotate=90))
    assert len({plain, moved, turned}) == 3
    assert v.render(RenderParams(seed=3)) == plain  # the transform is put back after each render
    v.close()
