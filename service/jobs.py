"""What the service asks its workers to do, as a protocol: only workers/ imports Celery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Queues per kind of work, so a deployment can give the browser hosts of their own. A
# CI pre-flight scan goes to the "preflight." twin of each: workers take from both in
# turn, so a CI job gets its answer in seconds while a registry backlog drains. ``cdn``
# carries promotions and yanks' storage work; ``retro`` the retro-scans' intake and
# CPU-bound stages, so they never sit in front of a new submission on ``scan``.
BASE_QUEUES = ("scan", "av", "browser")
URGENT = "preflight."
QUEUES = (*BASE_QUEUES, "callbacks", "cdn", "retro", *(URGENT + q for q in BASE_QUEUES))
# Where each stage runs (the rest on "scan").
STAGE_QUEUES = {"runtime": "browser", "antivirus": "av"}


def queue_of(stage: str, urgent: bool = False, background: bool = False) -> str:
    """The queue a stage's task goes to: a pre-flight's on the urgent twins, a
    retro-scan's CPU-bound stages on ``retro`` (the browser and clamd stay on their own
    queues: only those workers can run them)."""
    base = STAGE_QUEUES.get(stage)
    if base is None:
        base = "retro" if background else "scan"
    return (URGENT if urgent else "") + base


def consumed(base: str) -> str:
    """The -Q list for a worker of one kind: the urgent twin first."""
    return f"{URGENT}{base},{base}"


class JobQueue(Protocol):
    def start_scan(self, scan_id: str, urgent: bool = False) -> None:
        """Fetch and unpack the scan's bundle, then fan its stages out."""

    def run_stages(
        self, scan_id: str, stages: Sequence[str], urgent: bool = False, background: bool = False
    ) -> None:
        """Run these stages of the scan, side by side, each on its kind of worker
        (``urgent``: a pre-flight's; ``background``: a retro-scan's, on the low-priority
        queue where it can)."""

    def start_retro(self, scan_id: str) -> None:
        """start_scan for a retro-scan, on the low-priority queue."""

    def deliver(self, delivery_id: int) -> None:
        """Attempt one callback delivery."""

    def promote(self, promotion_id: int) -> None:
        """Bring CDN storage in line with a promotion (publish, or withdraw a yank)."""

    def ping(self) -> None:
        """Raise when the queue cannot be reached."""

    def depths(self) -> dict[str, int]:
        """Messages waiting per queue."""

    def broker_identity(self) -> str | None:
        """Changes when the broker restarted and may have lost its messages; None when
        the broker cannot tell (or keeps its messages across restarts)."""


@dataclass
class RecordingJobQueue:
    """Keeps what was asked, runs nothing: for unit tests and for tools that only write."""

    started: list[str] = field(default_factory=list)
    stages: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    urgent: list[str] = field(default_factory=list)  # scan ids sent to the urgent queues
    queue_depths: dict[str, int] | None = None  # what depths() answers, when set
    identity: str | None = None
    retro: list[str] = field(default_factory=list)
    promotions: list[int] = field(default_factory=list)

    def start_scan(self, scan_id: str, urgent: bool = False) -> None:
        self.started.append(scan_id)
        if urgent:
            self.urgent.append(scan_id)

    def run_stages(
        self, scan_id: str, stages: Sequence[str], urgent: bool = False, background: bool = False
    ) -> None:
        self.stages.append((scan_id, tuple(stages)))
        if urgent:
            self.urgent.append(scan_id)

    def start_retro(self, scan_id: str) -> None:
        self.retro.append(scan_id)

    def deliver(self, delivery_id: int) -> None:
        self.deliveries.append(delivery_id)

    def promote(self, promotion_id: int) -> None:
        self.promotions.append(promotion_id)

    def ping(self) -> None:
        return None

    def depths(self) -> dict[str, int]:
        if self.queue_depths is not None:
            return dict(self.queue_depths)
        return {"scan": len(self.started) + sum(len(st) for _, st in self.stages)}

    def broker_identity(self) -> str | None:
        return self.identity
