"""The service for real: PostgreSQL, Redis, a Celery worker process and gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from service.jobs import QUEUES as ALL_QUEUES
from service.processes import web_command, worker_command
from tests.paths import PROJECT_ROOT

PG_ADMIN = os.environ.get("GATEHOUSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
QUEUES = ",".join(ALL_QUEUES)
REDIS = os.environ.get("GATEHOUSE_TEST_REDIS", "redis://127.0.0.1:6379/7")
RABBITMQ = os.environ.get("GATEHOUSE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"gatehouse_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {url}: {exc}")


@contextmanager
def private_redis() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A redis-server of our own (the machine's binary), so a test may stop and restart it."""
    binary = "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        wait_for(lambda: _port_open(port), 10, "redis-server to listen")

    def stop() -> None:
        p = proc.pop()
        p.terminate()
        p.wait(timeout=10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", stop, start
    finally:
        while proc:
            stop()


@contextmanager
def private_rabbitmq() -> Iterator[str]:
    """The machine's RabbitMQ, while it has none of our queues; they are deleted after."""
    from kombu import Connection

    try:
        with Connection(RABBITMQ, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            present = [q for q in ALL_QUEUES if _declared(conn, q)]
    except OSError as exc:
        pytest.skip(f"RabbitMQ is not reachable at {RABBITMQ}: {exc}")
    if present:  # the test deletes its queues afterwards: never someone else's
        pytest.skip(f"RabbitMQ at {RABBITMQ} already has queues {present}")
    try:
        yield RABBITMQ
    finally:
        with Connection(RABBITMQ) as conn:
            channel = conn.channel()
            for queue in ALL_QUEUES:
                channel.queue_delete(queue)
                channel.exchange_delete(queue)  # Celery declares one per queue


def _declared(conn: Any, queue: str) -> bool:
    from amqp.exceptions import NotFound

    channel = conn.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except NotFound:
        return False
    channel.close()
    return True


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Live:
    env: dict[str, str]
    logs: Path
    web_url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        beat = Path(self.env["GATEHOUSE_DATA_DIR"]) / f"beat-{name}"
        cmd = worker_command(QUEUES, 2, f"{name}-{uuid.uuid4().hex[:6]}", beat)
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                cmd, env=self.env, cwd=PROJECT_ROOT, stdout=log, stderr=log, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        port = free_port()
        with (self.logs / "web.log").open("ab") as log:
            self.procs["web"] = subprocess.Popen(
                web_command(f"127.0.0.1:{port}", 1, 4),
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.web_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(self.web_url), 30, "the web server")

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def service_env(
    data_dir: Path, database_url: str, broker_url: str, clamd_socket: Path, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update(
        {
            "GATEHOUSE_DATA_DIR": str(data_dir),
            "GATEHOUSE_WORK_ROOT": str(data_dir / "work"),
            "GATEHOUSE_DATABASE_URL": database_url,
            "GATEHOUSE_BROKER_URL": broker_url,
            "GATEHOUSE_CLAMD_SOCKET": str(clamd_socket),
            "GATEHOUSE_DETONATION_TIMEOUT": "8",
            "GATEHOUSE_STAGE_TIMEOUT": "25",
            "GATEHOUSE_TASK_TIME_LIMIT": "30",
            "GATEHOUSE_BROKER_VISIBILITY_TIMEOUT": "300",
            "GATEHOUSE_STUCK_AFTER": "35",
            "GATEHOUSE_SWEEP_INTERVAL": "2",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    env.update(extra)
    return env
