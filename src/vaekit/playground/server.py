"""The playground's server: a Starlette app that decodes latents of one trained run on request.

Every answer is JSON; images travel as PNG data URLs. A malformed or out-of-range request gets
a 4xx answer with {"error": "..."} naming what is wrong, never a traceback.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vaekit.data import load_dataset
from vaekit.diagnostics import latent_diagnostics
from vaekit.errors import ModelError
from vaekit.objectives import elbo
from vaekit.plots import prior_quantile_grid, project_2d, slerp
from vaekit.rundir import load_run

STATIC = Path(__file__).parent / "static"
MAX_IMAGES = 256  # most images one request may ask to decode
MAX_ABS_Z = 1e3  # latents beyond this are no longer "exploring the prior"
SCATTER_POINTS = 2000


class BadRequest(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(status_code=400, detail=message)


def png_data_url(image: torch.Tensor) -> str:
    """A (C, H, W) image in [0, 1] as a PNG data URL."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Playground:
    """A trained run with what the page needs precomputed: test posteriors, activity, a 2-D view.

    The sliders move the top stochastic layer: all of z for one layer, z_L for a hierarchy, whose
    lower layers are then the means of p(z_i|z_{i+1}).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.model, self.config = load_run(run_dir)
        if "traversals" in self.model.pictures_without:  # nothing continuous for a slider to sweep
            raise ModelError(
                f"the playground's sliders cannot sweep the latents of {run_dir}: "
                f"{self.model.pictures_without['traversals']}; its pictures are in {Path(run_dir) / 'images'}."
            )
        data = load_dataset(self.config.data, self.config.model.image_shape)
        self.images = data.test.images
        self.labels = data.test.labels
        self.class_names = data.class_names
        self.observations = data.evaluation_observations("test")
        self.lock = threading.Lock()  # one decode at a time: torch already uses every core
        diagnostics = latent_diagnostics(self.model, self.observations)
        sizes = self.model.latent_sizes
        self.sliders = slice(sum(sizes[:-1]), None)  # the top layer: all of z for one layer
        self.activity = diagnostics.activity[self.sliders]
        self.active = diagnostics.active[self.sliders]
        self.order = torch.argsort(self.activity, descending=True).tolist()
        self.means = diagnostics.posterior_means[:, self.sliders]  # (N, slider dims)
        self.projection, self.axes = self._projection()

    def _projection(self) -> tuple[torch.Tensor, list[str]]:
        """2-D view of the first SCATTER_POINTS posterior means (plots.project_2d)."""
        xy, axes, _ = project_2d(self.means[:SCATTER_POINTS], self.labels[:SCATTER_POINTS])
        return xy, list(axes)

    @property
    def latent_dim(self) -> int:
        """How many sliders: the dimension of the top stochastic layer."""
        return self.means.shape[1]

    def full_latent(self, v: torch.Tensor) -> torch.Tensor:
        """The model's z for slider values v (n, latent_dim): v itself, or v with the means of the layers below."""
        sizes = self.model.latent_sizes
        z = torch.cat([v.new_zeros(len(v), sum(sizes[:-1])), v], -1)
        return self.model.prior.fill_below(z, len(sizes) - 1)

    def description(self) -> str:
        """The model in a line: family, layers, prior, and what the sliders move."""
        m, sizes = self.config.model, self.model.latent_sizes
        family = {"none": f"{m.architecture} VAE", "two-layer": "two-layer VAE", "ladder": "ladder VAE"}[m.hierarchy]
        family = family if self.model.family == "vae" else f"{m.architecture} {self.model.family}"
        flow = "" if m.posterior_flow == "none" else f", {m.posterior_flow} flow ({m.flow_steps} steps)"
        active = int(self.active.sum())
        if len(sizes) == 1:
            layers = f"{sizes[0]} latent dimensions ({active} active)"
        else:
            layers = (f"{len(sizes)} stochastic layers ({'+'.join(map(str, sizes))}); the sliders move the top "
                      f"layer z{len(sizes)}, {sizes[-1]} dimensions ({active} active)")  # fmt: skip
        prior = self.model.prior.top.label if len(sizes) > 1 else self.model.prior.label
        return f"{family}{flow}, {m.likelihood} decoder, prior {prior}, {layers}"

    def decode(self, v: torch.Tensor) -> list[str]:
        """Decoded means for slider values v (n, latent_dim), as PNG data URLs."""
        with self.lock, torch.no_grad():
            return self._images(self.full_latent(v))

    def _images(self, z: torch.Tensor) -> list[str]:
        return [png_data_url(img) for img in self.model.decode(z).mean]

    def info(self) -> dict[str, Any]:
        m = self.config.model
        return {
            "description": self.description(),
            "start": [round(float(v), 5) for v in self.start()],
            "latent_dim": self.latent_dim,
            "image_shape": list(m.image_shape),
            "architecture": m.architecture,
            "likelihood": m.likelihood,
            "test_images": len(self.images),
            "dimensions": [
                {
                    "index": j,
                    "activity": round(float(self.activity[j]), 5),
                    "active": bool(self.active[j]),
                    "range": self.slider_range(j),
                }
                for j in self.order
            ],
            "has_manifold": self.latent_dim == 2 and "manifold" not in self.model.pictures_without,
            "has_samples": "samples" not in self.model.pictures_without,
            "no_bound": self.model.no_bound,  # why the test images get no ELBO; "" where they do
        }

    def start(self) -> torch.Tensor:
        """Where the sliders start: the prior's typical point, or for a model with no prior the codes' mean."""
        return self.model.prior.typical_point() if self.model.has_bound else self.means.mean(0)

    def slider_range(self, j: int) -> list[float]:
        """Where slider j moves: [-3, 3] under a prior; for a model with none (an autoencoder), whose codes have
        no N(0, I) scale, its codes' mean +- 3 standard deviations over the test images."""
        if self.model.has_bound:
            return [-3.0, 3.0]
        centre, spread = float(self.means[:, j].mean()), 3 * float(self.means[:, j].std().clamp_min(1e-3))
        return [round(centre - spread, 3), round(centre + spread, 3)]

    def class_name(self, label: int) -> str:
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def scatter(self) -> dict[str, Any]:
        return {
            "axes": self.axes,
            "points": [[round(float(a), 4), round(float(b), 4)] for a, b in self.projection],
            "labels": self.labels[: len(self.projection)].tolist(),
            "class_names": list(self.class_names),
        }

    def test_image(self, index: int) -> dict[str, Any]:
        x = self.observations[index : index + 1]
        with self.lock, torch.no_grad():
            mu = self.model.posterior(x).mean
            terms = elbo(self.model, x, num_samples=100, generator=torch.Generator().manual_seed(index))
            recon = self.model.decode(mu).mean[0]
            mu = mu[:, self.sliders]
        return {
            "index": index,
            "label": int(self.labels[index]),
            "class_name": self.class_name(int(self.labels[index])),
            "z": [round(float(v), 5) for v in mu[0]],
            "image": png_data_url(self.images[index]),
            "reconstruction": png_data_url(recon),
            "elbo": float(terms.elbo[0]),
            "reconstruction_term": float(terms.reconstruction[0]),
            "kl": float(terms.kl[0]),
        }

    def interpolate(self, a: int, b: int, steps: int, mode: str) -> list[str]:
        with self.lock, torch.no_grad():
            mu = self.model.posterior(self.observations[[a, b]]).mean[:, self.sliders]
        t = torch.linspace(0, 1, steps)
        path = slerp(mu[0], mu[1], t) if mode == "slerp" else (1 - t)[:, None] * mu[0] + t[:, None] * mu[1]
        return self.decode(path)

    def samples(self, n: int, temperature: float, seed: int) -> list[str]:
        """Decoded draws from the model's own prior, their spread scaled by the temperature around
        the prior's mean (for N(0, I): z = temperature * eps)."""
        with self.lock, torch.no_grad():
            z = self.model.sample_prior(n, torch.Generator().manual_seed(seed))
            if self.model.prior.closed_form_kl:  # N(0, I)
                centre = torch.zeros(z.shape[1])
            else:  # the learned prior's mean, estimated once per request from a fixed draw
                centre = self.model.sample_prior(4096, torch.Generator().manual_seed(0)).mean(0)
            return self._images(centre + temperature * (z - centre))

    def manifold(self, n: int) -> list[list[str]]:
        images = self.decode(prior_quantile_grid(n))
        return [images[i * n : (i + 1) * n] for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Request parsing: every check names the field and the allowed range.


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except Exception:  # malformed JSON of any kind
        raise BadRequest("the request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object.")
    return body


def _int(body: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be an integer from {low} to {high}, not {value!r}.")
    return value


def _float(body: dict[str, Any], key: str, low: float, high: float, default: float | None = None) -> float:
    value = body.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise BadRequest(f"'{key}' must be a finite number from {low:g} to {high:g}, not {value!r}.")
    return float(value)


def _playground(request: Request) -> Playground:
    return request.app.state.playground


async def index(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html")


async def info(request: Request) -> JSONResponse:
    return JSONResponse(_playground(request).info())


async def scatter(request: Request) -> JSONResponse:
    return JSONResponse(_playground(request).scatter())


async def decode(request: Request) -> JSONResponse:
    pg, body = _playground(request), await _json(request)
    z = body.get("z")
    if not isinstance(z, list) or len(z) != pg.latent_dim:
        raise BadRequest(f"'z' must be a list of {pg.latent_dim} numbers.")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in z):
        raise BadRequest("every value of 'z' must be a finite number.")
    if max(abs(v) for v in z) > MAX_ABS_Z:
        raise BadRequest(f"values of 'z' must lie within +-{MAX_ABS_Z:g}.")
    return JSONResponse({"image": pg.decode(torch.tensor([z], dtype=torch.float32))[0]})


async def test_image(request: Request) -> JSONResponse:
    pg, raw = _playground(request), request.path_params["index"]
    last_index = len(pg.images) - 1
    if not raw.isdigit() or int(raw) > last_index:
        raise HTTPException(404, f"test image {raw!r} does not exist: use 0 to {last_index}.")
    return JSONResponse(pg.test_image(int(raw)))


async def interpolate(request: Request) -> JSONResponse:
    pg, body = _playground(request), await _json(request)
    last_index = len(pg.images) - 1
    a, b = _int(body, "a", 0, last_index), _int(body, "b", 0, last_index)
    steps = _int(body, "steps", 2, 64, 10)
    mode = body.get("mode", "lerp")
    if mode not in ("lerp", "slerp"):
        raise BadRequest(f"'mode' must be 'lerp' or 'slerp', not {mode!r}.")
    return JSONResponse({"images": pg.interpolate(a, b, steps, mode)})


async def samples(request: Request) -> JSONResponse:
    pg = _playground(request)
    if "samples" in pg.model.pictures_without:  # a model with no prior (an autoencoder) has no samples
        raise HTTPException(404, f"no samples: {pg.model.pictures_without['samples']}.")
    body = await _json(request)
    n = _int(body, "n", 1, MAX_IMAGES, 16)
    temperature = _float(body, "temperature", 0.0, 10.0, 1.0)
    seed = _int(body, "seed", 0, 2**31 - 1, 0)
    return JSONResponse({"images": pg.samples(n, temperature, seed)})


async def manifold(request: Request) -> JSONResponse:
    pg = _playground(request)
    if pg.latent_dim != 2:
        raise HTTPException(404, f"the manifold needs a 2-D latent space; this model has {pg.latent_dim}.")
    if "manifold" in pg.model.pictures_without:
        raise HTTPException(404, f"no manifold: {pg.model.pictures_without['manifold']}.")
    n = request.query_params.get("n", "12")
    if not n.isdigit() or not 2 <= int(n) <= 16:
        raise BadRequest(f"'n' must be an integer from 2 to 16, not {n!r}.")
    return JSONResponse({"rows": pg.manifold(int(n))})


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


def create_app(playground: Playground) -> Starlette:
    """The playground's web app: the page, its static files and the JSON endpoints, over one run."""
    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/scatter", scatter),
        Route("/api/decode", decode, methods=["POST"]),
        Route("/api/test/{index}", test_image),
        Route("/api/interpolate", interpolate, methods=["POST"]),
        Route("/api/samples", samples, methods=["POST"]),
        Route("/api/manifold", manifold),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.playground = playground
    return app
