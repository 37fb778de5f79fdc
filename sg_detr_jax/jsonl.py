"""JSON-lines reading with located errors, and atomic JSON / JSON-lines writing."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Iterator


def iter_jsonl(path: str) -> Iterator[tuple[int, dict]]:
  """Yields (1-based line number, record) for every non-empty line of a JSON-lines file.

  Raises:
    FileNotFoundError: if the file is missing.
    ValueError: naming the file and line, if a line is not a JSON object.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"annotation/prediction file not found: {path}")
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue  # several official files have blank or missing trailing newlines
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
      if not isinstance(record, dict):
        raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
      yield line_no, record


def read_jsonl(path: str) -> list[dict]:
  """All records of a JSON-lines file (see `iter_jsonl`)."""
  return [record for _, record in iter_jsonl(path)]


def _atomic_write(path: str, text: str) -> None:
  """Writes to a temporary file in the same folder, then renames: readers never see half a file."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_jsonl(path: str, records: Iterable[dict]) -> None:
  """Atomically writes records as JSON lines."""
  _atomic_write(path, "".join(json.dumps(r) + "\n" for r in records))


def write_json(path: str, obj: Any, indent: int = 4) -> None:
  """Atomically writes one JSON document (indent 4, like the official metrics files)."""
  _atomic_write(path, json.dumps(obj, indent=indent) + "\n")
