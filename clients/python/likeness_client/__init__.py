"""A small typed client of Likeness's bot API: `Client` (blocking) and `AsyncClient` (asyncio).

    from likeness_client import Client

    with Client("http://127.0.0.1:8000", api_key) as likeness:
        job = likeness.wait(likeness.generate("@luna on a beach --seed 7", nick="alice").job_id)
        open("luna.png", "wb").write(likeness.download(job))
"""

from likeness_client.client import AsyncClient, Client
from likeness_client.events import ChainEvent, Event, Preview, Progress, Queue, Waiting
from likeness_client.models import (
    Accepted,
    Batch,
    BatchAccepted,
    BatchJob,
    BatchMember,
    Job,
    LikenessError,
    Model,
    Picture,
    Result,
)

__all__ = [
    "Accepted",
    "AsyncClient",
    "Batch",
    "BatchAccepted",
    "BatchJob",
    "BatchMember",
    "ChainEvent",
    "Client",
    "Event",
    "Job",
    "LikenessError",
    "Model",
    "Picture",
    "Preview",
    "Progress",
    "Queue",
    "Result",
    "Waiting",
]
