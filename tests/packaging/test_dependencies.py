"""The lock matches pyproject.toml, and each service runs on its own dependency group alone.

Each service is installed the way its container image is (deploy/install-service.sh: the runtime plus
the service's group, from uv.lock) into a fresh venv, and every module of the service is imported there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
SERVICES = ("gateway", "chat", "planner", "renderer", "facecheck", "delivery")
# What must never ride along: the heavy face stack outside facecheck; the LLM SDK only where a model is called
# (chat and planner; the gateway for OpenAI-compatible voice transcription).
FORBIDDEN = {
    "gateway": {"insightface", "onnxruntime", "dlib-bin", "numpy", "websockets", "pgserver"},
    "chat": {"insightface", "onnxruntime", "dlib-bin", "numpy", "websockets", "pgserver"},
    "planner": {"insightface", "onnxruntime", "dlib-bin", "numpy", "websockets", "pgserver"},
    "renderer": {"insightface", "onnxruntime", "dlib-bin", "numpy", "openai", "pgserver"},
    "facecheck": {"openai", "websockets", "pgserver", "opencv-python"},
    "delivery": {"insightface", "onnxruntime", "dlib-bin", "numpy", "openai", "websockets", "pgserver"},
}
# Imports every module of the named packages; prints what failed, one per line.
IMPORT_ALL = """
import importlib, pkgutil, sys
failed = []
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""

pytestmark = pytest.mark.skipif(UV is None, reason="uv is installed by `make install` (deploy/uv-requirements.txt)")


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, **kw)


def test_the_lock_matches_pyproject() -> None:
    result = run(UV, "lock", "--check", "--offline")
    assert result.returncode == 0, f"uv.lock is out of date with pyproject.toml: run `make lock`\n{result.stderr}"


@pytest.fixture(scope="module")
def uv_env() -> dict[str, str]:
    # Links into uv's cache instead of copies: these venvs live for one test.
    return {**os.environ, "PATH": f"{Path(UV).parent}{os.pathsep}{os.environ['PATH']}", "UV_LINK_MODE": "symlink",
            "UV_PYTHON_DOWNLOADS": "never"}


def installed(venv: Path, env: dict[str, str]) -> set[str]:
    listing = run(UV, "pip", "list", "--format", "json", "--python", str(venv / "bin" / "python"), env=env)
    assert listing.returncode == 0, listing.stderr
    return {entry["name"].lower() for entry in json.loads(listing.stdout)}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_imports_with_only_its_own_group(service: str, tmp_path: Path, uv_env: dict[str, str]) -> None:
    venv = tmp_path / service
    install = run("sh", "deploy/install-service.sh", service, str(venv), sys.executable, env=uv_env)
    assert install.returncode == 0, install.stderr
    packages = installed(venv, uv_env)
    assert not packages & FORBIDDEN[service], f"{service}'s group carries {sorted(packages & FORBIDDEN[service])}"
    imports = run(str(venv / "bin" / "python"), "-c", IMPORT_ALL, f"services.{service}",
                  env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/")})
    assert imports.returncode == 0, f"{service} needs more than its group:\n{imports.stdout}{imports.stderr}"
    # Every image runs the migration Job's `likeness migrate` (against an external database).
    migrate = run(str(venv / "bin" / "python"), "-c", "import services.launcher.cli, services.launcher.supervisor",
                  env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/")})
    assert migrate.returncode == 0, migrate.stderr


def test_the_launcher_runs_on_the_runtime_and_the_embedded_group(tmp_path: Path, uv_env: dict[str, str]) -> None:
    venv = tmp_path / "embedded"
    install = run("sh", "deploy/install-service.sh", "embedded", str(venv), sys.executable, env=uv_env)
    assert install.returncode == 0, install.stderr
    assert not installed(venv, uv_env) & {"openai", "insightface", "onnxruntime", "websockets"}
    imports = run(str(venv / "bin" / "python"), "-c", IMPORT_ALL, "contracts", "services.launcher.embedded",
                  env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/")})
    assert imports.returncode == 0, imports.stdout + imports.stderr
    cli = run(str(venv / "bin" / "python"), "-c", "import services.launcher.cli, services.launcher.supervisor",
              env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/")})
    assert cli.returncode == 0, cli.stderr
