"""The project as packaged: its lock, its per-service dependency groups, its images."""
