"""Desk tests run the service with stages whose findings the test controls."""

from __future__ import annotations

import pytest

from service.orchestration import StageRegistry
from tests.service.conftest import InlineJobQueue
from tests.service.desk import DESK_FACTORIES


@pytest.fixture
def jobs() -> InlineJobQueue:
    return InlineJobQueue(registry=StageRegistry(DESK_FACTORIES))
