"""The embedded broker: kombu's SQLAlchemy transport on SQLite, polled every 100 ms.

The stock transport polls once a second, which would add up to a second to every hop
of a scan; its transport options all go to create_engine, so the interval is set here.
"""

from __future__ import annotations

from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport


class Transport(SQLAlchemyTransport):
    polling_interval = 0.1
