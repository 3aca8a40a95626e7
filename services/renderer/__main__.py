"""`python -m services.renderer`: run the renderer service alone against the configured NATS."""

from services.renderer.service import build_runtime
from services.renderer.settings import RendererSettings
from services.runtime.runner import Runtime, run_service


async def build() -> Runtime:
    return build_runtime(RendererSettings())


if __name__ == "__main__":
    run_service(build)
