"""A real Sentinel set for tests: a primary, a replica and three sentinels.

    with sentinel_set(tmp_path) as s:
        s.url                  # redis+sentinel://127.0.0.1:p1,...:p3/mymaster
        s.primary, s.replica   # the data nodes as started (processes, ports)
        s.replica_promoted()   # True once the sentinels name the replica as the primary
        s.rejoin()             # start the killed primary again: the sentinels make it a replica

Every node is the binary the embedded server uses, on free loopback ports; the
sentinels are ``valkey-server sentinel.conf --sentinel`` with a one-second
down-after. At the end everything is stopped (SIGTERM, then SIGKILL) and removed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .cluster_servers import wait_for

SERVICE = "mymaster"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(eq=False)
class Server:
    port: int
    directory: Path
    args: list[str]
    proc: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.args, cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: redis.Redis(port=self.port, socket_timeout=5).ping(), 30, f"server {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass(eq=False)
class SentinelSet:
    primary: Server
    replica: Server
    sentinels: list[Server]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{SERVICE}"

    def named_primary(self) -> int | None:
        """The port the first answering sentinel names as the primary."""
        for s in self.sentinels:
            try:
                host_port = redis.Redis(port=s.port, socket_timeout=2).sentinel_get_master_addr_by_name(
                    SERVICE
                )
            except redis.exceptions.RedisError:
                continue
            if host_port:
                return int(host_port[1])
        return None

    def replica_promoted(self) -> bool:
        return self.named_primary() == self.replica.port

    def rejoin(self) -> None:
        """Start the old primary again; the sentinels turn it into a replica of the new one."""
        self.primary.start()
        client = redis.Redis(port=self.primary.port, socket_timeout=5)
        wait_for(
            lambda: client.info("replication").get("master_link_status") == "up",
            120,
            "the old primary to follow the new one",
        )


def _data_node(binary: str, root: Path, extra: Sequence[str] = ()) -> Server:
    port = _port()
    directory = root / str(port)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
    return Server(port, directory, args)


@contextlib.contextmanager
def sentinel_set(
    directory: Path, *, binary: str | None = None, extra_args: Sequence[str] = ()
) -> Iterator[SentinelSet]:
    """A primary, its replica and three sentinels watching them; see the module."""
    if binary is None:
        from taskqueue.embedded import find_server_binary

        binary = find_server_binary()
    root = Path(directory) / f"sentinel-{time.monotonic_ns()}"
    started: list[Server] = []
    try:
        primary = _data_node(binary, root, extra_args)
        primary.start()
        started.append(primary)
        replica = _data_node(binary, root, [*extra_args, "--replicaof", "127.0.0.1", str(primary.port)])
        replica.start()
        started.append(replica)
        wait_for(
            lambda: redis.Redis(port=replica.port).info("replication").get("master_link_status") == "up",
            30,
            "the replica to sync",
        )
        sentinels = []
        for _ in range(3):
            port = _port()
            where = root / f"sentinel-{port}"
            where.mkdir(parents=True)
            conf = where / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {where}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            sentinel = Server(port, where, [binary, str(conf), "--sentinel"])
            sentinel.start()
            started.append(sentinel)
            sentinels.append(sentinel)
        made = SentinelSet(primary, replica, sentinels)
        wait_for(lambda: made.named_primary() == primary.port, 30, "the sentinels to agree on the primary")
        yield made
    finally:
        for server in reversed(started):
            with contextlib.suppress(AttributeError):
                server.stop()
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["SentinelSet", "Server", "sentinel_set"]
