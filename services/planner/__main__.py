"""`python -m services.planner`: run the planner service alone against the configured NATS and Postgres."""

from services.runtime.runner import Runtime, run_service
from services.planner.settings import PlannerSettings


async def build() -> Runtime:
    return Runtime(PlannerSettings(), database=True, relay=True)


if __name__ == "__main__":
    run_service(build)
