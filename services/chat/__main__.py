"""`python -m services.chat`: run the chat service alone against the configured NATS and Postgres."""

from services.runtime.runner import Runtime, run_service
from services.chat.settings import ChatSettings


async def build() -> Runtime:
    return Runtime(ChatSettings(), database=True, relay=True)


if __name__ == "__main__":
    run_service(build)
