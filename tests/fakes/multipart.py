"""multipart/form-data as the fakes read it (python-multipart is not a dependency; the format is small).

Test-side on purpose: a fake does not parse with the code it stands in front of.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Part", "parse_multipart"]


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/form-data body, in order; ValueError when it is not one."""
    params = dict(_param(p) for p in content_type.split(";")[1:])
    boundary = params.get("boundary", "").strip('"')
    if not content_type.lower().startswith("multipart/form-data") or not boundary:
        raise ValueError("not multipart/form-data with a boundary")
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.decode("utf-8", "replace").split("\r\n") if line)}
        disposition = dict(_param(p) for p in headers.get("content-disposition", "").split(";")[1:])
        parts.append(Part(disposition.get("name", "").strip('"'), data.removesuffix(b"\r\n"),
                          disposition["filename"].strip('"') if "filename" in disposition else None,
                          headers.get("content-type")))
    return parts


def _param(text: str) -> tuple[str, str]:
    key, _, value = text.strip().partition("=")
    return key.lower(), value
