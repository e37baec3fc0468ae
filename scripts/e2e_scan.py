#!/usr/bin/env python3
"""Check that a chatd server holds no plaintext of end-to-end encrypted chats.

    .venv/bin/python scripts/e2e_scan.py --config chatd.toml --needle "canary 7f3a9c" \\
        [--path /var/log/chatd.log] [--path /backups/chatd] [--url http://127.0.0.1:8080]

Send a message only you know (the needle, a "canary") in an encrypted chat,
then run this: it searches every byte the server keeps for it, in UTF-8,
UTF-16 and base64 (at every alignment):

* every file under the config's ``[server] data_dir`` (SQLite database, its
  WAL, media, node id), raw, so deleted-but-not-overwritten pages count too;
* with ``[storage] backend = "scylla"``, every row of every table of the
  keyspace, read back through CQL (SSTables are compressed on disk, so their
  bytes cannot be searched directly);
* any ``--path`` given (server logs, backups) and, with ``--url``, ``/metrics``.

Prints where a needle was found and exits 1, else exits 0 saying what it read.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tomllib
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def forms(needle: str) -> list[bytes]:
    """The byte strings a stored copy of ``needle`` would contain."""
    raw = needle.encode()
    out = [raw, needle.encode("utf-16-le")]
    for shift in range(3):
        # base64 of the needle at any offset: keep the characters whose 6 bits all
        # come from the needle, not from the bytes around it.
        encoded = base64.b64encode(b"\x00" * shift + raw + b"\x00\x00")
        start, end = -(-shift * 8 // 6), (shift + len(raw)) * 8 // 6
        if end - start >= 8:
            out.append(encoded[start:end])
    return out


def files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            yield path


def scan_bytes(where: str, data: bytes, needles: dict[str, list[bytes]]) -> list[str]:
    hits = [needle for needle, fs in needles.items() if any(f in data for f in fs)]
    return [f"{needle!r} in {where}" for needle in hits]


def scan_files(paths: Iterable[Path], needles: dict[str, list[bytes]]) -> tuple[int, list[str]]:
    found: list[str] = []
    count = 0
    for path in files(paths):
        count += 1
        found += scan_bytes(str(path), path.read_bytes(), needles)
    return count, found


def _value_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()


def scan_cql(scylla: dict[str, Any], needles: dict[str, list[bytes]]) -> tuple[int, list[str]]:
    """Read every row of every table of the keyspace and search each value."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    auth = None
    if scylla.get("username"):
        auth = PlainTextAuthProvider(scylla["username"], scylla.get("password", ""))
    cluster = Cluster(
        scylla.get("contact_points", ["127.0.0.1"]),
        port=int(scylla.get("port", 9042)),
        auth_provider=auth,
    )
    keyspace = scylla.get("keyspace", "chatd")
    found: list[str] = []
    rows = 0
    try:
        session = cluster.connect()
        tables = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
        )
        for (table,) in tables:
            result = session.execute(f'SELECT * FROM "{keyspace}"."{table}"')
            for row in result:  # the driver pages through the whole table
                rows += 1
                data = b"\x00".join(_value_bytes(v) for v in row)
                found += scan_bytes(f"{keyspace}.{table}", data, needles)
    finally:
        cluster.shutdown()
    return rows, sorted(set(found))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="the chatd TOML configuration")
    parser.add_argument("--needle", action="append", default=[], help="a known plaintext")
    parser.add_argument("--needles-file", type=Path, help="one known plaintext per line")
    parser.add_argument("--path", action="append", type=Path, default=[], help="more to scan")
    parser.add_argument("--url", help="the server's base URL, to scan its /metrics")
    args = parser.parse_args(argv)
    texts = list(args.needle)
    if args.needles_file:
        texts += [t for t in args.needles_file.read_text().splitlines() if t]
    if not texts:
        parser.error("give at least one --needle")
    needles = {t: forms(t) for t in texts}
    config: dict[str, Any] = {}
    if args.config:
        config = tomllib.loads(args.config.read_text())
    paths = list(args.path)
    data_dir = config.get("server", {}).get("data_dir")
    if data_dir:
        paths.insert(0, (args.config.parent / data_dir) if args.config else Path(data_dir))
    count, found = scan_files(paths, needles)
    report = [f"{count} files"]
    storage = config.get("storage", {})
    if storage.get("backend") == "scylla":
        rows, in_rows = scan_cql(storage.get("scylla", {}), needles)
        found += in_rows
        report.append(f"{rows} rows of keyspace {storage.get('scylla', {}).get('keyspace')}")
    if args.url:
        with urllib.request.urlopen(args.url.rstrip("/") + "/api/v1/metrics") as resp:
            found += scan_bytes("/metrics", resp.read(), needles)
        report.append("/metrics")
    if found:
        print("PLAINTEXT FOUND:\n  " + "\n  ".join(found))
        return 1
    print(f"no plaintext of {len(texts)} needle(s) in " + ", ".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
