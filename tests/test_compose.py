"""docker-compose.yml, read as data (no Docker engine here): it names real settings, runs
every queue, and starts gunicorn the way ``gatehouse serve`` does."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import yaml

from scanner.config import ArchiveLimits, Settings
from service.jobs import QUEUES
from service.processes import web_command
from tests.paths import PROJECT_ROOT


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _setting_names() -> set[str]:
    names = {f"GATEHOUSE_{f.name.upper()}" for f in fields(Settings)}
    names |= {f"GATEHOUSE_ARCHIVE_{f.name.upper()}" for f in fields(ArchiveLimits)}
    return names


def test_every_gatehouse_variable_is_a_setting() -> None:
    services = _compose()["services"]
    used = {
        key
        for svc in services.values()
        for key in (svc.get("environment") or {})
        if key.startswith("GATEHOUSE_")
    }
    assert used and used <= _setting_names(), used - _setting_names()


def test_the_workers_consume_every_queue_and_the_browser_alone() -> None:
    services = _compose()["services"]
    consumed: dict[str, set[str]] = {}
    for name, svc in services.items():
        cmd = svc.get("entrypoint") or []
        if cmd[:4] == ["celery", "-A", "workers.worker", "worker"]:
            consumed[name] = set(cmd[cmd.index("-Q") + 1].split(","))
    assert set().union(*consumed.values()) == set(QUEUES)
    assert [n for n, q in consumed.items() if "browser" in q] == ["browser-worker"]
    assert consumed["browser-worker"] == {"browser", "preflight.browser"}
    assert services["browser-worker"]["networks"] == ["backend"]
    assert _compose()["networks"]["backend"]["internal"] is True


def test_the_api_runs_gunicorn_as_serve_does() -> None:
    api = _compose()["services"]["api"]["entrypoint"]
    serve = web_command("0.0.0.0:8080", 2, 4)
    serve = serve[serve.index("gunicorn") :]
    assert api == serve


def test_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    for svc in compose["services"].values():
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, source
