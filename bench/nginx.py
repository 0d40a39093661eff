"""nginx configurations: the fast fake upstream, and the `proxy_pass` reference gateway."""

import json
from pathlib import Path

from bench.payloads import CHAT_RESPONSE

_COMMON = """\
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
{servers}
}}
"""

_UPSTREAM_SERVER = """\
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
        location / {{
            default_type application/json;
            return 404 '{{"detail":"Not Found"}}';
        }}
    }}
"""

_PROXY_SERVER = """\
    upstream {name} {{
        server 127.0.0.1:{target};
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer x";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
"""


def upstream_config(prefix: Path, port: int, workers: int) -> str:
    """nginx answering POST /v1/chat/completions with a fixed chat completion (with usage)."""
    body = json.dumps(CHAT_RESPONSE, separators=(",", ":"))
    server = _UPSTREAM_SERVER.format(port=port, body=body)
    return _COMMON.format(workers=workers, prefix=prefix, servers=server)


def proxy_config(prefix: Path, routes: dict[int, int], workers: int) -> str:
    """nginx relaying each listen port in `routes` to its target port, streaming both ways."""
    servers = "".join(
        _PROXY_SERVER.format(name=f"target{port}", port=port, target=target)
        for port, target in routes.items()
    )
    return _COMMON.format(workers=workers, prefix=prefix, servers=servers)
