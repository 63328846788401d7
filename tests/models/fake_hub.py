"""A loopback model hub: serves one local folder as a hub repo at a fixed commit, over the same HTTP API that
huggingface_hub's model_info and snapshot_download use (repo info, file tree, resolve with HEAD metadata)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "c0ffee" * 6 + "c0ff"


class FakeHub:
    def __init__(self, repo: str, folder: Path, commit: str = COMMIT):
        self.repo, self.folder, self.commit, self.requests = repo, Path(folder), commit, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's names)
                self._answer(body=True)

            def do_HEAD(self):  # noqa: N802
                self._answer(body=False)

            def _answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                status, data, headers = hub.route(unquote(urlparse(self.path).path))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        files = sorted(p for p in self.folder.rglob("*") if p.is_file())
        revisions = ("main", self.commit)
        as_json = {"Content-Type": "application/json"}
        info, tree, resolve = (f"/api/models/{self.repo}/revision/", f"/api/models/{self.repo}/tree/",
                               f"/{self.repo}/resolve/")
        if path.startswith(info) and path[len(info):] in revisions:
            siblings = [{"rfilename": str(p.relative_to(self.folder))} for p in files]
            return 200, json.dumps({"id": self.repo, "sha": self.commit, "siblings": siblings}).encode(), as_json
        if path.startswith(tree) and path[len(tree):].split("/")[0] in revisions:
            listing = [{"type": "file", "path": str(p.relative_to(self.folder)), "size": p.stat().st_size,
                        "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in files]
            return 200, json.dumps(listing).encode(), as_json
        if path.startswith(resolve):
            revision, _, name = path[len(resolve):].partition("/")
            if revision in revisions and (self.folder / name).is_file():
                data = (self.folder / name).read_bytes()
                return 200, data, {"X-Repo-Commit": self.commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        return 404, b"{}", {"X-Error-Code": "RepoNotFound" if not path.startswith(resolve) else "EntryNotFound"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
