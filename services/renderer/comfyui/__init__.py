"""A ComfyUI client that follows `shared/reference/comfyui/PROTOCOL.md`.

Pure parts (`protocol`, `tracker`, `replies`) turn frames and replies into facts; `http`, `socket`
and `client` do the I/O. Failures are `services.renderer.errors.RenderError` (see its tree).
"""

from services.renderer.comfyui.client import ComfyUIClient, Submission, Timeouts

__all__ = ["ComfyUIClient", "Submission", "Timeouts"]
