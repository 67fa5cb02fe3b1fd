"""A reverse proxy that makes an MLflow 3 server look like an MLflow 2.x one to a client.

Usage: mlflow2_proxy.py PORT UPSTREAM_URL

Routes MLflow 2.22 does not have (the LoggedModel API, /api/3.0, OTLP /v1/traces) answer 404
with an HTML page, as 2.22's Flask server does; /version says 2.22.5; everything else is
forwarded unchanged (bodies are small in the tests, so they are buffered).
"""
import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2])
MISSING = ("/api/2.0/mlflow/logged-models", "/api/3.0/", "/v1/traces")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        path = self.path
        if path.startswith(MISSING):
            return self.answer(404, b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>", "text/html")
        if path.split("?")[0] == "/version":
            return self.answer(200, b"2.22.5", "text/plain")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, path, body=body, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Proxy).serve_forever()
