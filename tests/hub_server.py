"""A Hub-compatible HTTP server on 127.0.0.1, enough for the real huggingface_hub client to push and pull.

In-memory repos of model files. `fail_with = 500` makes every request fail, to test a broken Hub.
Requests are recorded (method, path, headers) so tests can look for leaked tokens.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
from urllib.parse import unquote, urlparse

from .local_server import LocalServer


class HubServer(LocalServer):
    def __init__(self, fail_with: int | None = None):
        self.repos: dict[str, dict] = {}  # repo id -> {"sha": str, "files": {path: bytes}}
        self.fail_with = fail_with
        self.requests: list[tuple[str, str, dict]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status, payload, headers=None):
                self._send(status, json.dumps(payload).encode(), headers)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                path = unquote(urlparse(self.path).path)
                server.requests.append((self.command, self.path, dict(self.headers)))
                body = self._body() if self.command == "POST" else b""
                if server.fail_with:
                    return self._json(server.fail_with, {"error": "the test Hub is down"})
                endpoint = f"http://{self.headers['Host']}"
                if self.command == "POST" and path == "/api/repos/create":
                    request = json.loads(body)
                    repo_id = (
                        f"{request['organization']}/{request['name']}"
                        if request.get("organization")
                        else request["name"]
                    )
                    url = f"{endpoint}/{repo_id}"
                    if repo_id in server.repos:
                        return self._json(409, {"error": "exists", "url": url})
                    server.repos[repo_id] = {"sha": "0" * 40, "files": {}}
                    return self._json(200, {"url": url, "name": repo_id})
                if self.command == "POST" and path == "/api/validate-yaml":
                    return self._json(200, {})
                parts = path.strip("/").split("/")
                if self.command == "POST" and parts[:2] == ["api", "models"] and "preupload" in parts:
                    files = json.loads(body)["files"]
                    return self._json(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                if self.command == "POST" and parts[:2] == ["api", "models"] and "commit" in parts:
                    repo_id = "/".join(parts[2:parts.index("commit")])
                    repo = server.repos.setdefault(repo_id, {"sha": "0" * 40, "files": {}})
                    for line in body.decode().splitlines():
                        entry = json.loads(line)
                        if entry["key"] == "file":
                            repo["files"][entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
                        elif entry["key"] == "deletedFile":
                            repo["files"].pop(entry["value"]["path"], None)
                    repo["sha"] = hashlib.sha1(
                        json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in repo["files"].items())).encode()
                    ).hexdigest()
                    return self._json(200, {"commitUrl": f"{endpoint}/{repo_id}/commit/{repo['sha']}",
                                            "commitOid": repo["sha"]})
                if self.command == "GET" and parts[:2] == ["api", "models"]:
                    repo_id = "/".join(parts[2:4])
                    if repo_id not in server.repos:
                        return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    repo = server.repos[repo_id]
                    return self._json(200, {"id": repo_id, "sha": repo["sha"],
                                            "siblings": [{"rfilename": name} for name in sorted(repo["files"])]})
                if self.command in ("GET", "HEAD") and "resolve" in parts:
                    index = parts.index("resolve")
                    repo_id, filename = "/".join(parts[:index]), "/".join(parts[index + 2:])
                    repo = server.repos.get(repo_id)
                    if repo is None:
                        return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    if filename not in repo["files"]:
                        return self._json(404, {"error": "Entry not found"},
                                          {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["sha"]})
                    content = repo["files"][filename]
                    return self._send(200, content, {"X-Repo-Commit": repo["sha"],
                                                     "ETag": f'"{hashlib.sha1(content).hexdigest()}"'},
                                      content_type="application/octet-stream")
                return self._json(404, {"error": f"not handled: {self.command} {path}"})

            do_GET = do_POST = do_HEAD = do_PUT = _handle

        super().__init__(Handler)
        self.endpoint = self.base_url
