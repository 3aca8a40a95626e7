"""Public HTTP API (FastAPI), Server-Sent Event streams, the web page, auth and per-user limits."""
