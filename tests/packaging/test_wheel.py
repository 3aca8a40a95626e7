"""The built wheel carries the web page: installed on its own into a scratch venv (no source tree on the
path), the gateway it contains serves `/` and `/static/*` over HTTP, against the tests' NATS and Postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from services.launcher.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
STATIC = REPO / "services" / "gateway" / "static"

pytestmark = pytest.mark.skipif(UV is None, reason="uv is installed by `make install` (deploy/uv-requirements.txt)")


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel; the dependencies come from this venv through a .pth path line."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so a build never writes into the shared working tree (build/, *.egg-info).
    source = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("contracts", "services"):
        shutil.copytree(REPO / part, source / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    run(UV, "build", "--wheel", "--quiet", "--out-dir", str(tmp / "dist"), str(source), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("likeness-*.whl")
    venv = tmp / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, str(venv), cwd=tmp)
    python = venv / "bin" / "python"
    run(UV, "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel), cwd=tmp)
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp).strip())
    # A plain path line: the dependencies, and not this venv's editable finder of the source tree.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_the_wheel_holds_the_page_and_the_gateway_serves_it(installed: Path, nats_url: str, database_url: str,
                                                            tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIKENESS_", "PYTHON"))}
    located = run(str(installed), "-c", "import services.gateway as g; print(g.__file__)", cwd=tmp_path).strip()
    assert Path(located).is_relative_to(installed.parent.parent), f"imported from {located}, not the wheel"

    port = free_port()
    env.update(LIKENESS_NATS_URL=nats_url, LIKENESS_DATABASE_URL=database_url, LIKENESS_HTTP_HOST="127.0.0.1",
               LIKENESS_HTTP_PORT=str(port), LIKENESS_ENVIRONMENT="test", LIKENESS_STATE_DIR=str(tmp_path))
    log = (tmp_path / "gateway.log").open("w")
    gateway = subprocess.Popen([str(installed), "-m", "services.gateway"], cwd=tmp_path, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
            page = _first_answer(client, "/", gateway, tmp_path / "gateway.log")
            assert page.status_code == 200 and page.content == (STATIC / "index.html").read_bytes()
            script = client.get("/static/app.js")
            assert script.status_code == 200 and script.content == (STATIC / "app.js").read_bytes()
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        log.close()


def _first_answer(client: httpx.Client, path: str, process: subprocess.Popen, log: Path) -> httpx.Response:
    """The first answer of a server still starting; a clear failure if it exits or never answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the gateway exited ({process.returncode}):\n{log.read_text()[-3000:]}"
        try:
            return client.get(path)
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"the gateway did not answer within 60 s:\n{log.read_text()[-3000:]}")


def test_the_wheel_holds_the_face_checks_calibration(installed: Path, tmp_path: Path) -> None:
    """The dlib backend scores through a calibration file shipped as package data (issue 16)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIKENESS_", "PYTHON"))}
    code = ("import services.facecheck.calibration_files as c; "
            "print(c.__file__); print(c.packaged_calibration(c.DLIB_CALIBRATION, recognizer='dlib/resnet_v1').raw_at(40))")
    result = subprocess.run([str(installed), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    located, cut = result.stdout.split()
    assert Path(located).is_relative_to(installed.parent.parent), f"imported from {located}, not the wheel"
    assert 0.5 < float(cut) < 0.7
