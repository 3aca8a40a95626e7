"""`python -m services.delivery`: run the delivery service alone against the configured NATS and Postgres."""

from services.delivery.service import build_runtime
from services.delivery.settings import DeliverySettings
from services.runtime.runner import Runtime, run_service


async def build() -> Runtime:
    return build_runtime(DeliverySettings())


if __name__ == "__main__":
    run_service(build)
