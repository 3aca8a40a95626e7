"""`python -m services.gateway`: run the gateway service alone against the configured NATS and Postgres."""

from services.runtime.runner import Runtime, run_service
from services.gateway.settings import GatewaySettings


async def build() -> Runtime:
    return Runtime(GatewaySettings(), database=True, relay=False)


if __name__ == "__main__":
    run_service(build)
