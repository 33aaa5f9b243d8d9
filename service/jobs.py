"""What the service asks its workers to do, as a protocol: only workers/ imports Celery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Queues per kind of work, so a deployment can give the browser hosts of their own.
# ``cdn`` carries promotions and yanks' storage work; ``retro`` the retro-scans' intake
# and CPU-bound stages, so they never sit in front of a new submission on ``scan``.
QUEUES = ("scan", "av", "browser", "callbacks", "cdn", "retro")


class JobQueue(Protocol):
    def start_scan(self, scan_id: str) -> None:
        """Fetch and unpack the scan's bundle, then fan its stages out."""

    def run_stages(self, scan_id: str, stages: Sequence[str], background: bool = False) -> None:
        """Run these stages of the scan, side by side, each on its kind of worker
        (``background``: a retro-scan's, on the low-priority queue where it can)."""

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


@dataclass
class RecordingJobQueue:
    """Keeps what was asked, runs nothing: for unit tests and for tools that only write."""

    started: list[str] = field(default_factory=list)
    stages: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    retro: list[str] = field(default_factory=list)
    promotions: list[int] = field(default_factory=list)

    def start_scan(self, scan_id: str) -> None:
        self.started.append(scan_id)

    def run_stages(self, scan_id: str, stages: Sequence[str], background: bool = False) -> None:
        self.stages.append((scan_id, tuple(stages)))

    def start_retro(self, scan_id: str) -> None:
        self.retro.append(scan_id)

    def deliver(self, delivery_id: int) -> None:
        self.deliveries.append(delivery_id)

    def promote(self, promotion_id: int) -> None:
        self.promotions.append(promotion_id)

    def ping(self) -> None:
        return None

    def depths(self) -> dict[str, int]:
        return {"scan": len(self.started) + sum(len(st) for _, st in self.stages)}
