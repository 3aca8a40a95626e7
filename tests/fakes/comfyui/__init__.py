"""A fake ComfyUI speaking the real HTTP + websocket protocol (shared/reference/comfyui/PROTOCOL.md).

In tests: `async with FakeComfyUI(Scenario(...)) as fake: ... fake.url ...`; as a process:
`python -m tests.fakes.comfyui --port N [--image-for module:function] [--step-delay S] [--fail-at NODE]`.
"""

from tests.fakes.comfyui.scenario import ImagePolicy, Scenario, same_as_input
from tests.fakes.comfyui.server import FakeComfyUI, closed_url

__all__ = ["FakeComfyUI", "ImagePolicy", "Scenario", "closed_url", "same_as_input"]
