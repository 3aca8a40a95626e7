"""Public HTTP API, SSE streams and the web page."""
