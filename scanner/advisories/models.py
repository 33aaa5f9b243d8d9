"""Advisory tables: sources, advisories, affected packages and RetireJS detectors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scanner.db import named_metadata


class AdvisoryBase(DeclarativeBase):
    metadata = named_metadata()


class AdvisorySource(AdvisoryBase):
    """One imported feed; re-importing it replaces its rows in one transaction."""

    __tablename__ = "advisory_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # osv | retirejs
    snapshot: Mapped[str | None] = mapped_column(String(40))  # when the data was current
    newest_modified: Mapped[str | None] = mapped_column(String(40))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    advisory_count: Mapped[int]
    licence: Mapped[str | None] = mapped_column(String(200))
    # Ranges the import could not read (a bound that is not a version): counted and shown
    # by `advisories status`, never dropped in silence. ``warnings`` keeps the first few.
    warning_count: Mapped[int] = mapped_column(server_default="0", default=0)
    warnings: Mapped[list[str] | None] = mapped_column(JSON)
    # sha256 of the imported records and detectors: a re-import of the same data keeps
    # it, any change moves it (and with it the snapshot identity every scan records).
    digest: Mapped[str | None] = mapped_column(String(64))


class Advisory(AdvisoryBase):
    __tablename__ = "advisories"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("advisory_sources.id"), index=True)
    advisory_id: Mapped[str] = mapped_column(String(100), index=True)
    aliases: Mapped[list[str]] = mapped_column(JSON)
    severity: Mapped[str | None] = mapped_column(String(20))
    cvss: Mapped[str | None] = mapped_column(String(200))
    modified: Mapped[str | None] = mapped_column(String(40))
    published: Mapped[str | None] = mapped_column(String(40))
    references: Mapped[list[str]] = mapped_column(JSON)


class AffectedPackage(AdvisoryBase):
    __tablename__ = "advisory_packages"
    __table_args__ = (Index("ix_advisory_packages_ecosystem_name", "ecosystem", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    advisory_pk: Mapped[int] = mapped_column(ForeignKey("advisories.id"), index=True)
    ecosystem: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(300))  # normalised per ecosystem
    ranges: Mapped[list[Any]] = mapped_column(
        JSON
    )  # [[["introduced", "0"], ["fixed", "1.2"]], ...]
    versions: Mapped[list[str]] = mapped_column(JSON)


class JsDetector(AdvisoryBase):
    """RetireJS extractors: how to recognise a library and its version inside a file."""

    __tablename__ = "js_detectors"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("advisory_sources.id"), index=True)
    library: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # filecontent | filename | hash | uri | backdoor
    pattern: Mapped[str] = mapped_column(String(2000))
    version: Mapped[str | None] = mapped_column(String(100))  # for hash detectors
