"""``stylegan-run DIR serve``: a model viewer in the browser, rendering from the run's G_ema.

A FastAPI app served by uvicorn (the ``serve`` extra), bound to 127.0.0.1 unless told otherwise. The page
(``tools/viewer/``: one HTML file, its script and style sheet, no build step) has the controls of NVlabs'
desktop visualizer that apply to a CPU-served model: seed and truncation, class or text prompt, noise mode,
style mixing of a second seed at chosen layers, a latent walk toward another seed, and for generators with an
output transform (StyleGAN3, StyleGAN-XL) the translation and rotation of the equivariance view; a button
downloads the current image, another its ws (``w`` ``[num_ws, w_dim]`` in safetensors, the layout
``generate --projected-w`` reads).

Routes: ``GET /`` the page; ``GET /api/info`` the generator's description and the spec's sampling defaults;
``GET /api/render?seed=..`` a PNG; ``GET /api/w?seed=..`` the ws. Renders run in one worker thread, one at a
time, in the order asked; each client (the page sends an ``X-Client-Id``; else its address) has at most one
render queued or running: another request from it meanwhile gets 429. A bad parameter gets 400 and a JSON
``{"error": "one line"}`` naming it.

An image equals ``stylegan-run DIR generate``'s PNG for the same seed, truncation, noise mode and condition
(byte for byte): z is drawn as ``generate`` draws it and the ws go through the same mapping and synthesis
calls, with the same uint8 conversion and PNG encoder (:mod:`stylegan_core.images`).
"""
# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations (Request, the query
# model) at definition time, and they are imported inside create_app.
import math
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from typing import Any, Callable, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..images import float_to_uint8, png_bytes
from ..interfaces import OutputTransform
from .generate import condition, is_text_conditioned, parse_seeds, seed_z

#: the page, its script and style sheet (package data)
STATIC = resources.files("stylegan_core.tools") / "viewer"
MAX_TEXT = 300  # characters of a prompt
MAX_SEED = 2 ** 32 - 1  # NumPy's RandomState takes seeds below 2**32


class Busy(Exception):
    """The client already has a render queued or running."""


class RenderParams(BaseModel):
    """The query parameters of ``/api/render`` and ``/api/w`` (unset: the spec's run section)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    seed: int = Field(0, ge=0, le=MAX_SEED, description="z is drawn from this seed as generate draws it")
    trunc: Optional[float] = Field(None, ge=-10, le=10, description="truncation psi")
    cutoff: Optional[int] = Field(None, ge=0, description="truncate only the first N ws")
    noise: Optional[Literal["const", "random", "none"]] = Field(None, description="noise mode")
    class_idx: Optional[int] = Field(None, alias="class", description="class of a class-conditional generator")
    text: Optional[str] = Field(None, max_length=MAX_TEXT, description="prompt of a text-conditioned generator")
    mix_seed: Optional[int] = Field(None, ge=0, le=MAX_SEED, description="style mixing: the second seed")
    mix_layers: str = Field("", max_length=200, description="style mixing: the layers taken from mix_seed, e.g. 0-6")
    walk_seed: Optional[int] = Field(None, ge=0, le=MAX_SEED, description="latent walk: the seed walked toward")
    walk_t: float = Field(0.0, ge=0, le=1, description="latent walk: 0 at seed, 1 at walk_seed (linear in W)")
    tx: float = Field(0.0, ge=-10, le=10, description="output translation, x (image units)")
    ty: float = Field(0.0, ge=-10, le=10, description="output translation, y (image units)")
    rotate: float = Field(0.0, ge=-360, le=360, description="output rotation in degrees")

    @field_validator("trunc", "walk_t", "tx", "ty", "rotate")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


def user_transform(translate: tuple[float, float], angle: float) -> np.ndarray:
    """The inverse of the output transform the visualizer sets for a translation and rotation (degrees): StyleGAN3's
    input layer takes the inverse map from output to feature coordinates (NVlabs stylegan3 ``gen_images.py``,
    ``make_transform`` then ``np.linalg.inv``)."""
    s, c = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    m = np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], dtype=np.float64)
    return np.linalg.inv(m)


class Viewer:
    """The generator, its defaults and the render worker."""

    def __init__(self, G: torch.nn.Module, defaults: dict[str, Any], name: str = "", source: str = ""):
        self.G = G.to("cpu").eval()
        self.defaults = defaults  # trunc, cutoff, noise, class, text
        self.name, self.source = name, source
        self.text = is_text_conditioned(self.G)
        self.output_transform = next((m for m in self.G.synthesis.modules() if isinstance(m, OutputTransform)
                                      and isinstance(m.transform, torch.Tensor)
                                      and tuple(m.transform.shape) == (3, 3)), None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        G = self.G
        return {"name": self.name, "source": self.source, "z_dim": G.z_dim, "c_dim": G.c_dim, "w_dim": G.w_dim,
                "num_ws": G.num_ws, "img_resolution": G.img_resolution, "img_channels": G.img_channels,
                "condition": "text" if self.text else ("class" if G.c_dim else "none"),
                "output_transform": self.output_transform is not None, "defaults": self.defaults}

    # -- rendering (in the worker) ----------------------------------------------------------------------------
    def _setting(self, p: RenderParams) -> tuple[float, Optional[int], str]:
        d = self.defaults
        return (p.trunc if p.trunc is not None else d["trunc"], p.cutoff if p.cutoff is not None else d["cutoff"],
                p.noise or d["noise"])

    def _condition(self, p: RenderParams) -> Any:
        """``c`` for one image, as ``generate`` makes it (:func:`~stylegan_core.tools.generate.condition`), after
        checking the parameters in the page's terms."""
        G, d = self.G, self.defaults
        cls = p.class_idx if p.class_idx is not None else d.get("class")
        text = p.text if p.text is not None else d.get("text")
        if self.text:
            if p.class_idx is not None:
                raise ValueError("class: the generator is text-conditioned: give a text prompt instead")
            if not (text or "").strip():
                raise ValueError("text: the generator is text-conditioned: give a prompt")
            return condition(G, None, text, 1)
        if (p.text or "").strip():
            raise ValueError("text: the generator is not text-conditioned")
        if not G.c_dim:
            if p.class_idx is not None:
                raise ValueError("class: the generator is unconditional")
            return condition(G, None, None, 1)
        if cls is None:
            raise ValueError(f"class: the generator is conditional: give a class 0-{G.c_dim - 1}")
        if not 0 <= cls < G.c_dim:
            raise ValueError(f"class: {cls} is out of range: the generator has classes 0-{G.c_dim - 1}")
        return condition(G, cls, None, 1)

    @torch.no_grad()
    def ws(self, p: RenderParams) -> torch.Tensor:
        """ws ``[1, num_ws, w_dim]`` of the parameters: the seed's, walked toward ``walk_seed``, mixed with
        ``mix_seed``'s at ``mix_layers``."""
        G = self.G
        psi, cutoff, _ = self._setting(p)
        c = self._condition(p)

        def mapped(seed: int) -> torch.Tensor:
            return G.mapping(seed_z(G, [seed]), c, truncation_psi=psi, truncation_cutoff=cutoff)

        ws = mapped(p.seed)
        if p.walk_seed is not None and p.walk_t > 0:
            ws = ws.lerp(mapped(p.walk_seed), p.walk_t)
        if p.mix_seed is not None and p.mix_layers.strip():
            layers = sorted(set(parse_seeds(p.mix_layers)))
            bad = [i for i in layers if i >= G.num_ws]
            if bad:
                raise ValueError(f"mix_layers {bad[0]} is out of range: this generator has {G.num_ws} ws "
                                 f"(layers 0-{G.num_ws - 1})")
            ws = ws.clone()
            ws[:, layers] = mapped(p.mix_seed)[:, layers]
        return ws

    @torch.no_grad()
    def render(self, p: RenderParams) -> bytes:
        """The PNG of the parameters (see the module docstring for what it equals)."""
        _, _, noise = self._setting(p)
        ws = self.ws(p)
        t = self.output_transform
        moved = p.tx != 0 or p.ty != 0 or p.rotate != 0
        if moved and t is None:
            raise ValueError("tx, ty and rotate need a generator with an output transform (as StyleGAN3's input "
                             "layer has)")
        if t is None or not moved:
            return png_bytes(float_to_uint8(self.G.synthesize(ws, noise_mode=noise))[0])
        before = t.transform.clone()
        try:
            t.transform.copy_(torch.from_numpy(user_transform((p.tx, p.ty), p.rotate)))
            img = self.G.synthesize(ws, noise_mode=noise)
        finally:
            t.transform.copy_(before)
        return png_bytes(float_to_uint8(img)[0])

    def w_file(self, p: RenderParams) -> bytes:
        """The ws as safetensors bytes: ``w`` ``[num_ws, w_dim]`` and the parameters in the metadata."""
        from safetensors.torch import save

        meta = {k: str(v) for k, v in p.model_dump(by_alias=True).items() if v not in (None, "", 0, 0.0)}
        meta["seed"] = str(p.seed)
        return save({"w": self.ws(p)[0].contiguous()}, metadata=meta)

    # -- scheduling ---------------------------------------------------------------------------------------------
    def submit(self, client: str, fn: Callable[[], Any]) -> Future:
        """Queue ``fn`` on the render worker for ``client``; :class:`Busy` if the client has one queued or running."""
        with self._lock:
            if client in self._busy:
                raise Busy(client)
            self._busy.add(client)

        def job() -> Any:
            try:
                return fn()
            finally:
                with self._lock:
                    self._busy.discard(client)

        try:
            return self._executor.submit(job)
        except BaseException:
            with self._lock:
                self._busy.discard(client)
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def create_app(viewer: Viewer) -> Any:
    """The FastAPI app of a viewer."""
    import asyncio
    from typing import Annotated

    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="stylegan-core viewer", docs_url=None, redoc_url=None, openapi_url=None)
    no_store = {"Cache-Control": "no-store"}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=no_store)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        e = exc.errors()[0]
        loc = [str(x) for x in e.get("loc", ()) if x not in ("query", "params")]
        name = ".".join(loc) or "request"
        got = f" (got {e['input']!r})" if e.get("type") != "missing" and isinstance(e.get("input"), (str, int, float)) else ""
        msg = "unknown parameter" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
        return error(400, f"{name}: {msg}{got}")

    def client_of(request: Request) -> str:
        cid = request.headers.get("x-client-id", "")[:64]
        return cid or (request.client.host if request.client else "?")

    async def run(request: Request, fn: Callable[[], Any]) -> Any:
        try:
            fut = viewer.submit(client_of(request), fn)
        except Busy:
            return error(429, "busy: this client's previous render is still running (one render per client at a "
                              "time); ask again when it has arrived")
        try:
            return await asyncio.wrap_future(fut)
        except ValueError as e:
            return error(400, str(e))
        except Exception as e:  # noqa: BLE001  (reported to the page; the server keeps serving)
            return error(500, f"render failed: {type(e).__name__}: {e}")

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers=no_store)

    @app.get("/api/info")
    async def info() -> JSONResponse:
        return JSONResponse(viewer.info(), headers=no_store)

    @app.get("/api/render")
    async def render(request: Request, p: Annotated[RenderParams, Query()]) -> Response:
        out = await run(request, lambda: viewer.render(p))
        return out if isinstance(out, Response) else Response(out, media_type="image/png", headers=no_store)

    @app.get("/api/w")
    async def w(request: Request, p: Annotated[RenderParams, Query()]) -> Response:
        out = await run(request, lambda: viewer.w_file(p))
        if isinstance(out, Response):
            return out
        return Response(out, media_type="application/octet-stream",
                        headers={**no_store, "Content-Disposition": f'attachment; filename="seed{p.seed:04d}-w.safetensors"'})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(viewer: Viewer, host: str = "127.0.0.1", port: int = 8000, log: Callable[[str], Any] = print) -> None:
    """Serve the viewer until interrupted (Ctrl-C or SIGTERM)."""
    import uvicorn

    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    log(f"viewer of {viewer.name or 'the run'} ({viewer.source}) at http://{shown}:{sock.getsockname()[1]}/ "
        f"(Ctrl-C stops it)")
    server = uvicorn.Server(uvicorn.Config(create_app(viewer), log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        viewer.close()
        sock.close()


__all__ = ["Busy", "RenderParams", "Viewer", "create_app", "serve", "user_transform"]
