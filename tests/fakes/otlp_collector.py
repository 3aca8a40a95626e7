"""A fake OpenTelemetry collector: OTLP/HTTP (protobuf) on a real socket, as Jaeger, Tempo or the Collector take it.

    with OtlpCollector() as collector:      # LIKENESS_OTEL_EXPORTER_OTLP_ENDPOINT=collector.url
        ...
    collector.spans                         # [(resource service.name, span name), ...] as received
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.types import ASGIApp

from tests.fakes.threaded_server import ThreadedServer

__all__ = ["OtlpCollector"]


class OtlpCollector(ThreadedServer):
    """Accepts POST /v1/traces and logs each span as (service.name, span name); anything else is a 404."""

    name = "otlp-collector"

    @property
    def spans(self) -> list[tuple[str, str]]:
        return [tuple(entry) for entry in self.requests]

    def app(self) -> ASGIApp:
        app = FastAPI()

        @app.post("/v1/traces")
        async def traces(request: Request) -> Response:
            if request.headers.get("content-type") != "application/x-protobuf":
                return Response(status_code=415)
            export = ExportTraceServiceRequest.FromString(await request.body())
            for resource_spans in export.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.log([service, span.name])
            return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

        return app
