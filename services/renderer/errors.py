"""Errors of the renderer; each maps onto one `RenderFailed` event.

    RenderError              a render attempt failed; `kind` is one of RenderFailed's error kinds
    ├── TemplateError        a workflow template is invalid, unknown, or cannot take the job's parameters
    └── BackendUnreachable   a backend failed before anything was queued there, so another may take the job
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["BackendUnreachable", "ErrorKind", "RenderError", "TemplateError"]

ErrorKind = Literal["validation", "execution", "unreachable", "timeout", "interrupted", "internal"]
_KINDS = frozenset(get_args(ErrorKind))


class RenderError(Exception):
    """A failed render: what kind of failure, why, and where (node, backend) when known."""

    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        node_id: str | None = None,
        node_type: str | None = None,
        backend: str | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown render error kind {kind!r}")
        super().__init__(reason)
        self.kind: ErrorKind = kind
        self.reason = reason
        self.node_id = node_id
        self.node_type = node_type
        self.backend = backend

    def at(self, backend: str) -> RenderError:
        """The same error, tagged with the backend it happened on (if not tagged yet)."""
        if self.backend is None:
            self.backend = backend
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, {self.reason!r}, node={self.node_id!r}, backend={self.backend!r})"


class TemplateError(RenderError):
    """A template file is refused, is unknown, or cannot bind the job's parameters."""

    def __init__(self, reason: str, *, node_id: str | None = None, node_type: str | None = None) -> None:
        super().__init__("validation", reason, node_id=node_id, node_type=node_type)


class BackendUnreachable(RenderError):
    """Connecting, uploading or queueing failed: nothing runs there, so the job may go elsewhere."""

    def __init__(self, reason: str, *, backend: str | None = None) -> None:
        super().__init__("unreachable", reason, backend=backend)
