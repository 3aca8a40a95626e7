"""Drives ComfyUI backends: workflow templates, backend pool, progress; a draft engine when none is configured."""
