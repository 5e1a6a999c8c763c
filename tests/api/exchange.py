"""Sending a case (see cases.py) and normalising the reply for comparison: what must be equal
between etcd and raftkv is the status, framing (chunks, trailers), content type, header names,
CORS, and the body, once cluster-specific values are set aside."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.api import rawhttp

__all__ = ["as_dict", "normalize", "send"]


def as_dict(c: Any) -> dict:
    if isinstance(c, tuple):
        return {"name": c[0], "path": c[1], "body": c[2], "method": "POST"}
    return {"method": "POST", "body": "", **c}


def send(url: str, case: dict) -> rawhttp.Reply:
    during = case.get("during")
    if during:
        # a stream open while other requests change the store
        box: list[rawhttp.Reply] = []
        t = threading.Thread(target=lambda: box.append(_send(url, case)), daemon=True)
        t.start()
        time.sleep(1.0)  # the stream is open and its watchers created
        for path, body in during:
            rawhttp.request(url, path, body)
        t.join(30)
        return box[0]
    return _send(url, case)


def _send(url: str, case: dict) -> rawhttp.Reply:
    return rawhttp.request(
        url,
        case["path"],
        case.get("body", ""),
        method=case["method"],
        stream_for=case.get("stream_for"),
        timeout=15,
    )


# --- normalisation -----------------------------------------------------------------------------

_HIDE = ("cluster_id", "member_id", "raft_term")
_VARIABLE = {
    # values that legitimately differ between two clusters: keep the key, hide the value
    "/v3/maintenance/status": {
        "dbSize",
        "leader",
        "raftIndex",
        "raftTerm",
        "raftAppliedIndex",
        "dbSizeInUse",
    },
    "/v3/maintenance/hash": {"hash"},
}


def _strip(o: Any, variable: set[str]) -> Any:
    if isinstance(o, dict):
        out = {}
        for k, v in o.items():
            if k == "header" and isinstance(v, dict):
                out[k] = {hk: hv for hk, hv in v.items() if hk not in _HIDE}
            elif k in variable:
                out[k] = "<var>"
            else:
                out[k] = _strip(v, variable)
        return out
    if isinstance(o, list):
        return [_strip(x, variable) for x in o]
    return o


def _norm_json_text(text: str, path: str, urls: dict[str, str]) -> str:
    variable = set(_VARIABLE.get(path, ()))
    try:
        d = json.loads(text)
    except ValueError:
        return text
    if path.endswith("timetolive") and isinstance(d, dict):
        # remaining TTL ticks down: accept anything between 1 and the granted TTL
        ttl, granted = int(d.get("TTL", 0)), int(d.get("grantedTTL", 0))
        if granted and 0 < ttl <= granted:
            d["TTL"] = "<ttl>"
        if "keys" in d:  # etcd lists a lease's keys in Go map order
            d["keys"] = sorted(d["keys"])
    if path == "/v3/cluster/member/list" and isinstance(d, dict):
        for m in d.get("members", []):
            m["ID"] = "<id>"
            for f in ("peerURLs", "clientURLs"):
                if f in m:
                    m[f] = [urls.get(u, u) for u in m[f]]
        d["members"] = sorted(d.get("members", []), key=lambda m: m.get("name", ""))
    return json.dumps(_strip(d, variable), separators=(",", ":"), ensure_ascii=False)


def normalize(reply: rawhttp.Reply, case: dict, urls: dict[str, str]) -> dict:
    """What must be equal between etcd and raftkv: status, framing, content type, body."""
    path = case["path"]
    chunks = reply.chunks if reply.chunked else [reply.body]
    if case.get("stream_for") is not None and reply.chunked:
        # one entry per chunk: how a stream is cut into chunks is part of the behaviour
        body: Any = []
        for ch in chunks:
            text = ch.decode("utf-8", "replace")
            nl = text.endswith("\n")
            body.append(
                _norm_json_text(text[:-1] if nl else text, path, urls) + ("\\n" if nl else "")
            )
    else:
        body = _norm_json_text(reply.body.decode("utf-8", "replace"), path, urls)
    return {
        "status": reply.status,
        "content_type": reply.headers.get("content-type"),
        "chunked": reply.chunked,
        "nchunks": len(reply.chunks),
        "trailers": reply.trailers,
        "cors": reply.headers.get("access-control-allow-origin"),
        "allow": reply.headers.get("allow"),
        "header_names": sorted(h for h in reply.headers if h != "date"),
        "body": body,
    }
