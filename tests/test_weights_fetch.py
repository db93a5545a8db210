"""``stylegan-weights list`` / ``fetch`` (issue 22): downloads from a server this test starts on 127.0.0.1,
checked against the sha256, stored atomically in the cache and found by name from a metric's spec entry."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from stylegan_core.cli.weights import main
from stylegan_core.detectors import catalogue

NAME = "inception-2015-12-05"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        cut = self.path.endswith("truncated")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:  # the server goes away mid-file
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A loopback HTTP server serving a random Inception state dict (good), other bytes, and a cut-short copy."""
    from stylegan_core.detectors.inception import random_state_dict

    path = tmp_path_factory.mktemp("served") / "weights.pth"
    torch.save(random_state_dict(3), path)
    good = path.read_bytes()
    _Handler.files = {"good.pth": good, "bad.pth": good[:-1] + bytes([good[-1] ^ 1]), "good.pth.truncated": good}
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # a client that hangs up mid-file (the interrupt test)
            pass

    srv = Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hashlib.sha256(good).hexdigest()
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def entry(server, monkeypatch, tmp_path):
    """The catalogue's inception-2015-12-05 entry served from the loopback server, with that file's sha256; an
    empty cache."""
    base, digest = server
    monkeypatch.setitem(catalogue.CATALOGUE, NAME, dataclasses.replace(
        catalogue.CATALOGUE[NAME], url=f"{base}/good.pth", sha256=digest, sha256_prefix=None))
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "cache"))
    return base, digest, tmp_path / "cache"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_fetch_stores_a_verified_file_that_specs_find_by_name(entry, capsys):
    from stylegan_core.plugins import load_plugins
    from stylegan_core.tools.evaluate import build_metric, resolve_metric_config

    base, digest, cache = entry
    reg = load_plugins().registry
    spec_metrics = [{"type": "core.fid", "num_gen": 8, "detector": {"type": "core.inception", "weights": NAME,
                                                                     "input_size": 75}}]
    from stylegan_core.tools.evaluate import EvaluateError

    with pytest.raises(EvaluateError, match=f"stylegan-weights fetch {NAME}"):  # before: the command to run
        build_metric(resolve_metric_config("fid", {}, spec_metrics, reg), reg)
    assert main(["fetch", NAME, "--cache", str(cache), "--no-progress"]) == 0
    stored = cache / "weights" / NAME / catalogue.CATALOGUE[NAME].file
    assert capsys.readouterr().out.strip() == f"{NAME}: {stored}"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest and _leftovers(cache) == [stored.name]
    fid = build_metric(resolve_metric_config("fid", {}, spec_metrics, reg), reg)
    assert fid.describe() == {"detector": "core.inception(input_size=75)", "detector_hash": digest}
    assert main(["list"]) == 0
    assert f"status:   in the cache: {stored}" in capsys.readouterr().out
    assert main(["fetch", NAME, "--no-progress"]) == 0  # already there and verified: kept


def test_fetch_refuses_a_wrong_hash_and_leaves_nothing(entry, capsys):
    base, digest, cache = entry
    assert main(["fetch", NAME, "--url", f"{base}/bad.pth", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"does not match the expected {digest}" in err and "not stored" in err
    assert _leftovers(cache) == []


def test_fetch_refuses_a_truncated_download_and_leaves_nothing(entry, capsys):
    base, _, cache = entry
    assert main(["fetch", NAME, "--url", f"{base}/good.pth.truncated", "--no-progress"]) == 1
    assert "cut short" in capsys.readouterr().err
    assert _leftovers(cache) == []


def test_fetch_reports_a_server_that_is_down_or_answers_an_error(entry, capsys):
    base, _, cache = entry
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    assert main(["fetch", NAME, "--url", f"http://127.0.0.1:{port}/w.pth", "--timeout", "5", "--no-progress"]) == 1
    assert f"cannot reach http://127.0.0.1:{port}/w.pth" in capsys.readouterr().err
    assert main(["fetch", NAME, "--url", f"{base}/missing.pth", "--no-progress"]) == 1
    assert "answered HTTP 404" in capsys.readouterr().err
    assert _leftovers(cache) == []


def test_fetch_names_checksums_and_urls_are_checked(entry, capsys):
    base, _, _ = entry
    assert main(["fetch", "inceptoin-2015-12-05", "--no-progress"]) == 3
    assert "did you mean inception-2015-12-05" in capsys.readouterr().err
    # an entry without a published checksum needs one from the user, before anything is downloaded
    assert main(["fetch", "dino_vits16", "--url", f"{base}/good.pth", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no checksum is published" in err and "pass it with --sha256 HEX" in err
    assert main(["fetch", NAME, "--url", "file:///etc/passwd", "--no-progress"]) == 1
    assert "only http(s) sources" in capsys.readouterr().err
    # the shipped LPIPS weights are verified in place
    assert main(["fetch", "lpips-vgg-v0.1", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().endswith("lpips/weights/v0.1/vgg.pth")


def test_list_shows_every_detector_with_source_size_and_checksum(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("inception-2015-12-05", "vgg16", "lpips-vgg-v0.1", "tf_efficientnet_lite0",
                 "deit_base_distilled_patch16_224", "deit_small_distilled_patch16_224", "dino_vits16",
                 "clip-vit-l-14-openai"):
        assert f"\n{name}\n" in f"\n{out}"
    assert "sha256 prefix 6726825d" in out and "weights-inception-2015-12-05-6726825d.pth" in out
    assert "sha256 prefix 397923af" in out and "527.8 MB" in out
    assert "no published checksum (fetch needs --sha256)" in out


def test_an_interrupted_download_leaves_no_partial_file(entry):
    """Ctrl-C (or any exception) in the middle of a download: the temporary file is removed."""
    base, _, cache = entry

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalogue.fetch(NAME, progress=interrupt)
    assert _leftovers(cache) == []


def test_feature_networks_resolve_catalogue_names(monkeypatch, tmp_path):
    """core.timm / core.open_clip resolve weights the same way: an unfetched name gives the fetch command."""
    from stylegan_core.features import FeatureNetworkError
    from stylegan_core.io import resolve_weights

    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path))
    with pytest.raises(FeatureNetworkError, match="stylegan-weights fetch tf_efficientnet_lite0"):
        resolve_weights("core.timm", "tf_efficientnet_lite0", error=FeatureNetworkError)
    stored = catalogue.local_path(catalogue.CATALOGUE["tf_efficientnet_lite0"])
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"x")
    assert resolve_weights("core.timm", "tf_efficientnet_lite0") == stored
