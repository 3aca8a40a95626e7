"""`python -m services.renderer`: run the renderer service alone against the configured NATS and Postgres."""

from services.runtime.runner import Runtime, run_service
from services.renderer.settings import RendererSettings


async def build() -> Runtime:
    return Runtime(RendererSettings(), database=False, relay=False)


if __name__ == "__main__":
    run_service(build)
