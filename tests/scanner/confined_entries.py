"""Entry points the confinement tests run in the child process."""

from __future__ import annotations

import os
import time
from typing import Any


def echo(payload: Any) -> Any:
    return payload


def environment(_: Any) -> dict[str, str]:
    return dict(os.environ)


def sleep(payload: Any) -> None:
    time.sleep(float(payload))


def burn(_: Any) -> None:
    while True:
        pass


def allocate(payload: Any) -> int:
    held = bytearray(int(payload))
    return len(held)


def write(payload: Any) -> None:
    path, size = payload
    with open(path, "wb") as fh:  # noqa: PTH123 - a plain write is the point
        fh.write(b"x" * int(size))


def fail(_: Any) -> None:
    raise ValueError("a bug in the entry point")


def die(_: Any) -> None:
    os.abort()
