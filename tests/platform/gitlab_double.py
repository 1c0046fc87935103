"""A TEST DOUBLE of the GitLab REST API (v4) on loopback: the endpoints the platform bootstrap calls, shaped
after GitLab's API documentation (PRIVATE-TOKEN auth, X-Next-Page pagination, 201 on create, 400 on a
duplicate path, token values shown once). Not GitLab: just enough to test the client for real over HTTP."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class GitLabDouble:
    def __init__(self, token: str, readonly_token: str = "glpat-readonly", git_url: str = "https://gitlab.local") -> None:
        self.git_url = git_url
        self.token, self.readonly_token = token, readonly_token
        self.groups: list[dict] = []
        self.projects: list[dict] = []
        self.variables: dict[int, dict[str, dict]] = {}
        self.deploy_keys: dict[int, list[dict]] = {}
        self.access_tokens: dict[int, list[dict]] = {}
        self.runners: list[dict] = []
        self.users: list[dict] = []
        self.members: dict[int, list[dict]] = {}
        self.branches: dict[int, dict[str, str]] = {}
        self.files: dict[int, dict[str, dict[str, str]]] = {}
        self.commits: list[dict] = []
        self.calls: list[str] = []
        self.fail_next: dict[str, list[int]] = {}
        self._next_id = 100
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: object, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                path = parts.path.removeprefix("/api/v4")
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                double.calls.append(f"{self.command} {path}")
                for pattern, statuses in double.fail_next.items():
                    if re.fullmatch(pattern, path) and statuses:
                        return self._send(statuses.pop(0), {"message": "injected failure"})
                token = self.headers.get("PRIVATE-TOKEN")
                if token not in (double.token, double.readonly_token):
                    return self._send(401, {"message": "401 Unauthorized"})
                if token == double.readonly_token and self.command != "GET":
                    return self._send(403, {"message": "403 Forbidden"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                status, result, headers = double.route(self.command, path, query, body)
                self._send(status, result, headers)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def page(items: list, query: dict) -> tuple[int, list, dict]:
        per_page, page = int(query.get("per_page", 20)), int(query.get("page", 1))
        chunk = items[(page - 1) * per_page: page * per_page]
        more = page * per_page < len(items)
        return 200, chunk, {"X-Next-Page": str(page + 1) if more else "", "X-Total": str(len(items))}

    def route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, object, dict]:
        m = re.fullmatch
        if path == "/version":
            return 200, {"version": "19.6.0", "revision": "test-double"}, {}
        if path == "/groups" and method == "GET":
            return self.page([g for g in self.groups if query.get("search", "") in g["path"]], query)
        if path == "/groups" and method == "POST":
            if any(g["path"] == body["path"] for g in self.groups):
                return 400, {"message": "Failed to save group {:path=>[\"has already been taken\"]}"}, {}
            group = {"id": self.new_id(), "name": body["name"], "path": body["path"], "full_path": body["path"]}
            self.groups.append(group)
            return 201, group, {}
        if (g := m(r"/groups/(\d+)/projects", path)) and method == "GET":
            return self.page([p for p in self.projects if p["namespace_id"] == int(g[1])], query)
        if path == "/projects" and method == "POST":
            group = next(gr for gr in self.groups if gr["id"] == body["namespace_id"])
            full = f"{group['full_path']}/{body['path']}"
            if any(p["path_with_namespace"] == full for p in self.projects):
                return 400, {"message": {"path": ["has already been taken"]}}, {}
            project = {"id": self.new_id(), "name": body["name"], "path": body["path"], "namespace_id": group["id"],
                       "import_url": body.get("import_url"), "default_branch": "master" if body.get("import_url") else None,
                       "path_with_namespace": full, "http_url_to_repo": f"{self.git_url}/{body['path']}.git",
                       "import_status": "finished" if body.get("import_url") else "none"}
            self.projects.append(project)
            return 201, project, {}
        if v := m(r"/projects/(\d+)/variables", path):
            store = self.variables.setdefault(int(v[1]), {})
            if method == "GET":
                return self.page(list(store.values()), query)
            store[body["key"]] = dict(body)
            return 201, body, {}
        if (v := m(r"/projects/(\d+)/variables/(\w+)", path)) and method == "PUT":
            self.variables[int(v[1])][v[2]].update(body)
            return 200, self.variables[int(v[1])][v[2]], {}
        if k := m(r"/projects/(\d+)/deploy_keys", path):
            keys = self.deploy_keys.setdefault(int(k[1]), [])
            if method == "GET":
                return self.page(keys, query)
            keys.append({"id": self.new_id(), **body})
            return 201, keys[-1], {}
        if t := m(r"/projects/(\d+)/access_tokens", path):
            tokens = self.access_tokens.setdefault(int(t[1]), [])
            if method == "GET":
                return self.page([{k: v for k, v in tok.items() if k != "token"} for tok in tokens], query)
            token = {"id": self.new_id(), "name": body["name"], "scopes": body["scopes"], "active": True,
                     "revoked": False, "token": f"glpat-{self.new_id()}xyz"}
            tokens.append(token)
            return 201, token, {}
        if b := m(r"/projects/(\d+)/repository/branches", path):
            branches = self.branches.setdefault(int(b[1]), {"master": "upstream-head"})
            if method == "GET":
                return self.page([{"name": n} for n in branches], query)
            branches[body["branch"]] = body["ref"]
            return 201, {"name": body["branch"]}, {}
        if (b := m(r"/projects/(\d+)/repository/branches/([\w.-]+)", path)) and method == "GET":
            return 200, {"name": b[2], "commit": {"id": "c0ffee" + "0" * 34}}, {}
        if (p := m(r"/projects/(\d+)", path)) and method in ("GET", "PUT"):
            project = next(pr for pr in self.projects if pr["id"] == int(p[1]))
            project.update(body if method == "PUT" else {})
            return 200, project, {}
        if (f := m(r"/projects/(\d+)/repository/files/(.+)", path)) and method == "GET":
            from urllib.parse import unquote
            import base64
            content = self.files.get(int(f[1]), {}).get(query.get("ref", ""), {}).get(unquote(f[2]))
            if content is None:
                return 404, {"message": "404 File Not Found"}, {}
            return 200, {"content": base64.b64encode(content.encode()).decode(), "encoding": "base64"}, {}
        if (c := m(r"/projects/(\d+)/repository/commits", path)) and method == "POST":
            tree = self.files.setdefault(int(c[1]), {}).setdefault(body["branch"], {})
            for action in body["actions"]:
                tree[action["file_path"]] = action["content"]
            self.commits.append(body)
            return 201, {"id": f"{self.new_id():040d}", "message": body["commit_message"]}, {}
        if path == "/users" and method == "GET":
            return self.page([u for u in self.users if u["username"] == query.get("username", u["username"])], query)
        if path == "/users" and method == "POST":
            if any(u["username"] == body["username"] for u in self.users):
                return 409, {"message": "Username has already been taken"}, {}
            user = {"id": self.new_id(), "username": body["username"], "name": body["name"], "email": body["email"],
                    "password": body["password"], "skip_confirmation": body.get("skip_confirmation")}
            self.users.append(user)
            return 201, {k: v for k, v in user.items() if k != "password"}, {}
        if ms := m(r"/groups/(\d+)/members", path):
            members = self.members.setdefault(int(ms[1]), [])
            if method == "GET":
                return self.page(members, query)
            members.append({"id": body["user_id"], "access_level": body["access_level"]})
            return 201, members[-1], {}
        if path == "/runners/all" and method == "GET":
            return self.page([{k: v for k, v in r.items() if k != "token"} for r in self.runners], query)
        if path == "/user/runners" and method == "POST":
            runner = {"id": self.new_id(), "description": body["description"], "token": f"glrt-{self.new_id()}abc"}
            self.runners.append(runner)
            return 201, {"id": runner["id"], "token": runner["token"]}, {}
        return 404, {"message": "404 Not Found"}, {}
