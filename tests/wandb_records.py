"""Read the records of an offline W&B run file (``run-<id>.wandb``) back, as W&B's own sync does.

The file is a 7-byte header, then 32 KiB blocks of records framed like LevelDB's log (CRC32,
length, type: full / first / middle / last), each a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path, wait_s: float = 60.0) -> list:
    """The file's records, once it holds the run's ``exit`` record: W&B's service writes the file behind
    ``run.finish()``, and on a busy machine the last records reach the disk after it returns (waits at most
    ``wait_s`` seconds, then returns what is there)."""
    deadline = time.monotonic() + wait_s
    while True:
        records = _parse(Path(path).read_bytes(), path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _parse(data: bytes, path) -> list:
    from wandb.proto import wandb_internal_pb2

    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    chunks, pending, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == FULL:
            chunks.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            chunks.append(pending + chunk)
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def history_keys(records) -> set[str]:
    return {item.key or "/".join(item.nested_key) for r in records if r.WhichOneof("record_type") == "history"
            for item in r.history.item}
