"""`python -m services.facecheck`: run the facecheck service alone against the configured NATS and Postgres."""

from services.runtime.runner import Runtime, run_service
from services.facecheck.settings import FacecheckSettings


async def build() -> Runtime:
    return Runtime(FacecheckSettings(), database=False, relay=False)


if __name__ == "__main__":
    run_service(build)
