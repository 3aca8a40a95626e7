"""A real S3-compatible HTTP server for tests: moto's server on a free port of this machine (test code: never shipped).

moto speaks S3's REST protocol over a real socket; what it does not do (as of moto 5.2): verify request
signatures or presigned URLs' expiry, verify or store ChecksumSHA256. Tests that need those check the URL or
request instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

__all__ = ["ACCESS_KEY", "SECRET_KEY", "MotoS3", "moto_s3"]

ACCESS_KEY, SECRET_KEY = "likeness-test-key", "likeness-test-secret"


@dataclass(frozen=True)
class MotoS3:
    """A running moto server: its endpoint, and a plain (sync) boto3 client to act behind the store's back."""

    endpoint_url: str
    client: Any

    def settings(self, bucket: str, **extra: object) -> dict[str, object]:
        """RuntimeSettings fields that point the blob store at `bucket` on this server."""
        return {"blob_store": "s3", "s3_endpoint_url": self.endpoint_url, "s3_bucket": bucket,
                "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": SECRET_KEY, "s3_addressing_style": "path",
                "s3_connect_timeout_s": 2.0, "s3_read_timeout_s": 10.0, **extra}

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server in a daemon thread on a free port, until the block ends."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY,
                          config=Config(connect_timeout=2, read_timeout=10, s3={"addressing_style": "path"},
                                        request_checksum_calculation="when_required"))
    try:
        yield MotoS3(endpoint, client)
    finally:
        client.close()
        server.stop()
