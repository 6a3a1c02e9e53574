#!/usr/bin/env python3
"""An OTLP/HTTP collector that accepts spans and throws them away, for
measuring what exporting traces costs Stampede (docs/benchmarks.md):

    scripts/otlp-sink.py 4318 &
    STAMPEDE_OTLP_ENDPOINT=http://127.0.0.1:4318 stampede serve

It answers every POST to /v1/traces with an empty ExportTraceServiceResponse
and, on SIGINT or SIGTERM, prints how many exports and bytes it took.
"""
import http.server
import signal
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    exports = 0
    received = 0

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        Sink.exports += 1
        Sink.received += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)

    def stop(*_):
        print(f"otlp-sink: {Sink.exports} exports, {Sink.received} bytes", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
