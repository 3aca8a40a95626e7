"""`python -m services.chat`: run the chat service alone against the configured NATS and Postgres."""

from services.chat.service import build_runtime
from services.chat.settings import ChatSettings
from services.runtime.runner import Runtime, run_service


async def build() -> Runtime:
    return build_runtime(ChatSettings())


if __name__ == "__main__":
    run_service(build)
