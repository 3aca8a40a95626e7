"""`python -m services.planner`: run the planner service alone against the configured NATS and Postgres."""

from services.planner.service import build_runtime
from services.planner.settings import PlannerSettings
from services.runtime.runner import Runtime, run_service


async def build() -> Runtime:
    return build_runtime(PlannerSettings())


if __name__ == "__main__":
    run_service(build)
