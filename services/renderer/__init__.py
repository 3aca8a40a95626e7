"""Drives ComfyUI backends: workflow templates, backend pool, progress."""
