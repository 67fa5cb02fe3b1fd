#!/usr/bin/env python3
"""A slow Hub-protocol server on 127.0.0.1 for tools/screenshots.sh: it serves one folder as the
CPU int4 variant of microsoft/Phi-3-mini-4k-instruct-onnx, with the Hub's revision and tree
listings, `resolve` redirects to a "CDN" for large files, Range and the Hub's headers, sending at
a fixed rate so that a screenshot can catch the "Get a model" view mid-download.

    python3 tools/screenshot_hub.py FOLDER --port 8765 --rate 2000000

Not used by the tests (they have tests/support/hub_server.rs); nothing here is fetched from the Hub.
"""
import argparse
import hashlib
import http.server
import json
import os
import time

REPO = "microsoft/Phi-3-mini-4k-instruct-onnx"
VARIANT = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"


def git_blob_sha1(content):
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def load(folder):
    files = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            content = f.read()
        lfs = name.endswith((".onnx", ".onnx.data")) or len(content) > 1_000_000
        sha256 = hashlib.sha256(content).hexdigest()
        pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256.encode(), len(content))
        files[f"{VARIANT}/{name}"] = {"content": content, "lfs": lfs, "sha256": sha256,
                                      "git_sha1": git_blob_sha1(pointer if lfs else content)}
    return files


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate", type=int, default=2_000_000, help="bytes per second per download")
    args = parser.parse_args()
    files = load(args.folder)
    commit = git_blob_sha1(REPO.encode())
    base = f"http://127.0.0.1:{args.port}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, status, body=b"", headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def json(self, value):
            self.send(200, json.dumps(value).encode(), [("Content-Type", "application/json")])

        def do_GET(self):
            path = self.path.split("?")[0]
            if path.startswith(f"/api/models/{REPO}/revision/"):
                return self.json({"id": REPO, "modelId": REPO, "sha": commit, "private": False, "gated": False,
                                  "siblings": [{"rfilename": p} for p in files]})
            if path.startswith(f"/api/models/{REPO}/tree/"):
                entries, seen = [], set()
                for p, f in files.items():
                    parts = p.split("/")
                    for depth in range(1, len(parts)):
                        d = "/".join(parts[:depth])
                        if d not in seen:
                            seen.add(d)
                            entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
                    entry = {"type": "file", "oid": f["git_sha1"], "size": len(f["content"]), "path": p}
                    if f["lfs"]:
                        entry["lfs"] = {"oid": f["sha256"], "size": len(f["content"]), "pointerSize": 134}
                    entries.append(entry)
                return self.json(entries)
            prefix = f"/{REPO}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix):].split("/", 1)[1]
                f = files.get(name)
                if f is None:
                    return self.send(404, b'{"error": "EntryNotFound"}', [("X-Error-Code", "EntryNotFound")])
                common = [("ETag", f'"{f["git_sha1"]}"'), ("X-Repo-Commit", commit)]
                if f["lfs"]:
                    return self.send(302, b"", common + [("Location", f"{base}/cdn/{f['sha256']}"),
                                                          ("X-Linked-Etag", f'"{f["sha256"]}"'),
                                                          ("X-Linked-Size", str(len(f["content"])))])
                return self.send(200, f["content"], common)
            if path.startswith("/cdn/"):
                sha = path[len("/cdn/"):]
                f = next((f for f in files.values() if f["sha256"] == sha), None)
                if f is None:
                    return self.send(404)
                content = f["content"]
                start = 0
                header = self.headers.get("Range", "")
                if header.startswith("bytes=") and header.endswith("-"):
                    start = int(header[6:-1] or 0)
                body = content[start:]
                self.send_response(206 if start else 200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{sha}"')
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
                self.end_headers()
                chunk = 64 * 1024
                for offset in range(0, len(body), chunk):
                    self.wfile.write(body[offset:offset + chunk])
                    time.sleep(chunk / args.rate)
                return None
            return self.send(404)

        def log_message(self, *_):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
