"""The services a queue runs beside its workers (scheduler, autoscaler, monitor, metrics server).

A typed registry instead of a string-keyed dict that helpers reach into: a
service is anything with ``stop()``; ``get`` looks one up by kind (its class)
and, for services that come several to a process (a metrics server per port),
by key. ``stop_all`` stops them newest first when the queue closes.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol, TypeVar, runtime_checkable

log = logging.getLogger("taskqueue.services")


@runtime_checkable
class Service(Protocol):
    def stop(self) -> object: ...


S = TypeVar("S", bound=Service)


class Services:
    def __init__(self) -> None:
        self._items: dict[tuple[type, str], Service] = {}
        self._lock = threading.Lock()

    def add(self, service: S, key: str = "") -> S | None:
        """Register ``service`` under its class and ``key``; returns the one it replaced (not stopped)."""
        with self._lock:
            previous = self._items.pop((type(service), key), None)
            self._items[(type(service), key)] = service
        return previous  # type: ignore[return-value]

    def get(self, kind: type[S], key: str = "") -> S | None:
        """The service of class ``kind`` (or a subclass) under ``key``, None when there is none."""
        with self._lock:
            for (cls, k), service in self._items.items():
                if k == key and issubclass(cls, kind):
                    return service  # type: ignore[return-value]
        return None

    def all(self, kind: type[S]) -> list[S]:
        with self._lock:
            return [s for (cls, _), s in self._items.items() if issubclass(cls, kind)]  # type: ignore[misc]

    def remove(self, service: Service) -> bool:
        """Forget ``service`` (it stops itself); False when it was not registered."""
        with self._lock:
            for k, s in list(self._items.items()):
                if s is service:
                    del self._items[k]
                    return True
        return False

    def stop_all(self) -> None:
        """Stop every service, newest first; one that raises is logged and the rest still stop."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for service in reversed(items):
            try:
                service.stop()
            except Exception:
                log.exception("stopping %r failed", service)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["Service", "Services"]
