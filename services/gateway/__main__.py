"""`python -m services.gateway`: run the gateway service alone against the configured NATS and Postgres."""

from services.gateway.app import build_runtime
from services.runtime.runner import Runtime, run_service


async def build() -> Runtime:
    return build_runtime()


if __name__ == "__main__":
    run_service(build)
