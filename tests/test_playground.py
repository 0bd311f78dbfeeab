"""The playground: every endpoint with good and bad requests, then the page in a real browser."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest

starlette = pytest.importorskip("starlette", reason="the playground extra is not installed")
from starlette.testclient import TestClient  # noqa: E402

from vaekit.playground.server import Playground, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(trained_run_2d):
    return TestClient(create_app(Playground(trained_run_2d)))


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "vaekit playground" in page.text and "/static/app.js" in page.text
    assert "http" not in page.text  # no CDN: works offline
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_info_scatter_and_decode(client):
    info = client.get("/api/info").json()
    assert info["latent_dim"] == 2 and info["has_manifold"] and len(info["dimensions"]) == 2
    assert all(dim["range"] == [-3.0, 3.0] for dim in info["dimensions"])  # under the N(0, I) prior
    activities = [d["activity"] for d in info["dimensions"]]
    assert activities == sorted(activities, reverse=True)
    scatter = client.get("/api/scatter").json()
    assert len(scatter["points"]) == len(scatter["labels"]) == info["test_images"]
    a = client.post("/api/decode", json={"z": [0.0, 0.0]}).json()["image"]
    b = client.post("/api/decode", json={"z": [2.5, -2.5]}).json()["image"]
    assert a.startswith("data:image/png;base64,") and a != b


def test_test_image_interpolation_samples_manifold(client):
    t = client.get("/api/test/3").json()
    assert t["index"] == 3 and len(t["z"]) == 2
    assert t["elbo"] == pytest.approx(t["reconstruction_term"] - t["kl"], abs=1e-3)
    strip = client.post("/api/interpolate", json={"a": 0, "b": 5, "steps": 7, "mode": "slerp"}).json()["images"]
    assert len(strip) == 7 and strip[0] != strip[-1]
    s1 = client.post("/api/samples", json={"n": 5, "temperature": 0.5, "seed": 3}).json()["images"]
    s2 = client.post("/api/samples", json={"n": 5, "temperature": 0.5, "seed": 3}).json()["images"]
    assert len(s1) == 5 and s1 == s2
    rows = client.get("/api/manifold?n=4").json()["rows"]
    assert len(rows) == 4 and all(len(r) == 4 for r in rows)


def test_a_two_layer_model_gets_sliders_for_its_top_layer_and_samples_from_its_own_prior(tiny_data, tmp_path):
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.training import train

    model = ModelConfig(hidden_dim=32, latent_dim=6, hierarchy="two-layer", top_latent_dim=3, top_hidden_dim=16,
                        prior="mixture", prior_components=4)  # fmt: skip
    config = RunConfig(model, DataConfig(train_limit=600, eval_limit=200), TrainConfig(epochs=1, batch_size=50))
    train(config, tmp_path / "run", progress=False, dataset=tiny_data)
    client = TestClient(create_app(Playground(tmp_path / "run")))
    info = client.get("/api/info").json()
    assert info["latent_dim"] == 3 and len(info["dimensions"]) == 3  # z2, not z1 + z2
    assert "two-layer VAE" in info["description"] and "prior mixture of Gaussians" in info["description"]
    assert "2 stochastic layers (6+3); the sliders move the top layer z2, 3 dimensions" in info["description"]
    assert len(info["start"]) == 3 and any(v != 0 for v in info["start"])
    assert len(client.get("/api/test/0").json()["z"]) == 3
    a = client.post("/api/decode", json={"z": [0.0, 0.0, 0.0]}).json()["image"]
    b = client.post("/api/decode", json={"z": [2.0, -2.0, 1.0]}).json()["image"]
    assert a != b  # moving the top layer changes the picture through p(z1|z2)
    strip = client.post("/api/interpolate", json={"a": 0, "b": 5, "steps": 4}).json()["images"]
    samples = client.post("/api/samples", json={"n": 4, "seed": 1}).json()["images"]
    assert len(strip) == 4 and len(samples) == 4


@pytest.mark.parametrize(
    "method,path,body,status,fragment",
    [
        ("post", "/api/decode", {"z": [0.0]}, 400, "list of 2 numbers"),
        ("post", "/api/decode", {"z": [0.0, "x"]}, 400, "finite number"),
        ("post", "/api/decode", {"z": [1e9, 0.0]}, 400, "within"),
        ("post", "/api/decode", [1, 2], 400, "JSON object"),
        ("get", "/api/test/99999", None, 404, "does not exist"),
        ("get", "/api/test/-1", None, 404, "does not exist"),
        ("post", "/api/interpolate", {"a": 0, "b": 10**9}, 400, "'b' must be an integer"),
        ("post", "/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, 400, "'steps'"),
        ("post", "/api/interpolate", {"a": 0, "b": 1, "mode": "cubic"}, 400, "'mode'"),
        ("post", "/api/samples", {"n": 100000}, 400, "'n' must be an integer from 1 to 256"),
        ("post", "/api/samples", {"temperature": -1}, 400, "'temperature'"),
        ("get", "/api/manifold?n=500", None, 400, "'n'"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(client, method, path, body, status, fragment):
    response = getattr(client, method)(path, json=body) if body is not None else getattr(client, method)(path)
    assert response.status_code == status
    assert fragment in response.json()["error"]


def test_nan_in_raw_json_is_refused(client):
    response = client.post("/api/decode", content=b'{"z": [NaN, 0]}', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "finite" in response.json()["error"]


def test_cli_refuses_a_missing_run_before_serving(tmp_path, capsys):
    from vaekit.cli import main

    assert main(["playground", str(tmp_path / "missing"), "--no-browser"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_the_page_in_a_real_browser(trained_run_2d, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "playground", str(trained_run_2d), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the server did not start: {server.stderr.read() if server.poll() is not None else ''}")
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                ],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('decoded').dataset.version >= '1'")
            # the test-image panel shows image 0 on first load, not two broken-image icons
            page.wait_for_function("document.getElementById('test-original').src.startsWith('data:image/png')")
            assert "mlp VAE" in page.inner_text("#model-info") and "prior N(0, I)" in page.inner_text("#model-info")
            before = page.get_attribute("#decoded", "src")
            slider = page.locator("input[type=range]").first
            slider.fill("2.5")  # sets the value and fires input
            page.wait_for_function(f"document.getElementById('decoded').src !== {before!r}")
            assert page.get_attribute("#decoded", "src") != before
            page.screenshot(path=str(tmp_path / "after-slider.png"))

            page.wait_for_function("document.getElementById('scatter-note').textContent.includes('test images')")
            box = page.locator("#scatter").bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_function("document.getElementById('test-original').src.startsWith('data:image/png')")
            assert "ELBO" in page.inner_text("#test-terms")

            page.fill("#interp-a", "0")
            page.fill("#interp-b", "7")
            page.click("#interpolate")
            page.wait_for_function("document.querySelectorAll('#interp-strip img').length === 10")
            page.click("#sample")
            page.wait_for_function("document.querySelectorAll('#samples img').length === 24")
            page.wait_for_function("document.querySelectorAll('#manifold img').length === 144")
            assert page.is_hidden("#error")
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_autoencoder_gets_no_samples_and_no_elbo_in_the_playground(tiny_data, tmp_path):
    """A model with no prior: the samples endpoint answers one sentence (not a server error), the page hides
    the samples and the manifold, and the test images' terms are the reconstruction alone."""
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.training import train

    model = ModelConfig(family="autoencoder", hidden_dim=32, latent_dim=2)
    train_config = TrainConfig(epochs=1, batch_size=50, objective="reconstruction")
    train(RunConfig(model, DataConfig(train_limit=600, eval_limit=200), train_config), tmp_path / "run",
          progress=False, dataset=tiny_data)  # fmt: skip
    client = TestClient(create_app(Playground(tmp_path / "run")))
    info = client.get("/api/info").json()
    assert not info["has_samples"] and not info["has_manifold"] and "no ELBO" in info["no_bound"]
    assert "mlp autoencoder" in info["description"]
    response = client.post("/api/samples", json={"n": 4, "seed": 1})
    assert response.status_code == 404 and response.json()["error"].startswith("no samples: an autoencoder has no")
    assert client.get("/api/manifold").status_code == 404
    assert client.get("/api/test/0").json()["kl"] == 0
    codes = client.get("/api/scatter").json()  # the sliders span each code's own spread, from the codes' mean
    for dim in info["dimensions"]:
        low, high = dim["range"]
        assert low < info["start"][dim["index"]] < high and (low, high) != (-3.0, 3.0)
    assert codes["points"]
