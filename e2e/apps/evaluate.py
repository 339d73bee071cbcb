#!/usr/bin/env python3
"""Sends a user's feedback as an OpenTelemetry GenAI evaluation event, for the end-to-end tests.

It stands for the part of a real app that learns what its user thought of an answer, and
reports it with the OpenTelemetry SDK it already has instead of an HTTP client of its own:
the SDK's logs API emits one ``gen_ai.evaluation.result`` event (GenAI semantic conventions,
semantic-conventions v1.38.0 to v1.41.x; since moved to open-telemetry/semantic-conventions-genai)
for the response id the LLM call returned, through the SDK's batch processor and its real OTLP
log exporter (HTTP/protobuf or gRPC). The event's name goes in the log record's ``event_name``
field, as SDK 1.45 sends it, or with ``--event-name-attribute`` in the ``event.name`` attribute,
as SDKs did before OTLP 1.5 had the field. With ``--plain`` it sends an ordinary log line through
Python's ``logging`` instead (``LoggingHandler``), as an app that points all its logs at the
proxy would.

It prints one stdout line, ``{"exported": <records>, "failed": <records the exporter reported
failed>}``, after the provider's shutdown flushed everything, and exits 1 when an export failed.

Run it with the project's venv, e.g.::

    .venv/bin/python e2e/apps/evaluate.py --endpoint http://127.0.0.1:4318 \
        --response-id chatcmpl-... --score 1 --label thumbs-up --user-id user-42
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource

EVENT_NAME = "gen_ai.evaluation.result"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exporter", choices=("http", "grpc"), default="http",
                   help="OTLP transport (default http, i.e. HTTP/protobuf)")
    p.add_argument("--endpoint", required=True,
                   help="OTLP endpoint: for http a base URL such as http://127.0.0.1:4318 "
                        "(/v1/logs is appended); for grpc host:port such as 127.0.0.1:4317")
    p.add_argument("--token", default=None,
                   help="sent as Authorization: Bearer <token> (the proxy's --feedback-token)")
    p.add_argument("--plain", action="store_true",
                   help="send an ordinary log line instead of an evaluation event")
    p.add_argument("--event-name-attribute", action="store_true",
                   help="name the event with the event.name attribute, as older SDKs did, "
                        "instead of the log record's event_name field")
    p.add_argument("--response-id", help="gen_ai.response.id: the evaluated response's id")
    p.add_argument("--name", help="gen_ai.evaluation.name (the proxy's default: user feedback)")
    p.add_argument("--score", type=float, help="gen_ai.evaluation.score.value")
    p.add_argument("--label", help="gen_ai.evaluation.score.label")
    p.add_argument("--explanation", help="gen_ai.evaluation.explanation")
    p.add_argument("--user-id", help="user.id: one annotation per user")
    return p.parse_args(argv)


class Counting(LogRecordExporter):
    """The real exporter, counting what it exported and what it reported failed."""

    def __init__(self, exporter: LogRecordExporter):
        self.exporter = exporter
        self.exported = 0
        self.failed = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self.exporter.export(batch)
        if result == LogRecordExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            self.failed += len(batch)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def new_exporter(args: argparse.Namespace) -> LogRecordExporter:
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    if args.exporter == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=args.endpoint, insecure=True,
                               headers=tuple(headers.items()) if headers else None)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=args.endpoint.rstrip("/") + "/v1/logs", headers=headers)


def evaluation_attributes(args: argparse.Namespace) -> dict:
    attributes = {}
    for key, value in (
        ("gen_ai.response.id", args.response_id),
        ("gen_ai.evaluation.name", args.name),
        ("gen_ai.evaluation.score.value", args.score),
        ("gen_ai.evaluation.score.label", args.label),
        ("gen_ai.evaluation.explanation", args.explanation),
        ("user.id", args.user_id),
    ):
        if value is not None:
            attributes[key] = value
    if args.event_name_attribute:
        attributes["event.name"] = EVENT_NAME
    return attributes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exporter = Counting(new_exporter(args))
    provider = LoggerProvider(resource=Resource.create({"service.name": "feedback-e2e-app"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=100))
    try:
        if args.plain:
            log = logging.getLogger("feedback-e2e-app")
            log.propagate = False
            log.addHandler(LoggingHandler(logger_provider=provider))
            log.warning("the user did not answer")
        else:
            logger = provider.get_logger("feedback-e2e-app")
            attributes = evaluation_attributes(args)
            if args.event_name_attribute:
                logger.emit(attributes=attributes)
            else:
                logger.emit(event_name=EVENT_NAME, attributes=attributes)
    finally:
        # Export everything before exiting: shutdown flushes the batch processor.
        provider.force_flush()
        provider.shutdown()
    print(json.dumps({"exported": exporter.exported, "failed": exporter.failed}), flush=True)
    return 1 if exporter.failed else 0


if __name__ == "__main__":
    sys.exit(main())
