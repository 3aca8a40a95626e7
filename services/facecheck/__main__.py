"""`python -m services.facecheck`: run the facecheck service alone against the configured NATS."""

from services.facecheck.service import build_runtime
from services.facecheck.settings import FacecheckSettings
from services.runtime.runner import Runtime, run_service


async def build() -> Runtime:
    return build_runtime(FacecheckSettings())


if __name__ == "__main__":
    run_service(build)
