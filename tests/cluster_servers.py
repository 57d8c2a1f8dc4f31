"""Real Redis Cluster nodes for tests, from the binary the embedded server uses.

    with cluster(tmp_path, masters=3, replicas=1) as c:
        c.url                 # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...
        c.owner(b"{taskqueue}:workers")   # the master node serving that key's slot
        c.client(node)        # a plain client to one node (closed at the end)

``cluster`` starts ``masters + masters * replicas`` nodes on free loopback ports
(each at most 55535: a node's cluster bus listens on its port + 10000), gives
the masters the 16384 slots in equal ranges (CLUSTER ADDSLOTS, which every
supported server knows), joins them with CLUSTER MEET, makes each replica
follow its master (CLUSTER REPLICATE), and waits until every node says
``cluster_state:ok`` and knows every other. At the end it stops every node
(SIGTERM, then SIGKILL) and removes their directories, whatever happened.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

SLOTS = 16384
#: A node's cluster bus port is its port + this; both must be below 65536.
BUS_OFFSET = 10000
MAX_PORT = 65535 - BUS_OFFSET


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: Sequence[int] = ()) -> int:
    """A loopback port nothing listens on, at most 55535, whose bus port is free as well."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port <= MAX_PORT and port not in taken and _free(port + BUS_OFFSET):
            return port


@dataclass(eq=False)
class Node:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]
    id: str = ""
    master: Node | None = None  # None: it is a master
    slots: range | None = None  # a master's slots

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(eq=False)
class Cluster:
    nodes: list[Node]
    _clients: list[redis.Redis] = field(default_factory=list)
    #: how the nodes were started (``restart`` starts one again the same way)
    _binary: str = ""
    _extra: Sequence[str] = ()

    @property
    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.master is None]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every master (the client discovers the rest)."""
        return "redis+cluster://" + ",".join(n.address for n in self.masters) + "/"

    def client(self, node: Node, **kwargs: Any) -> redis.Redis:
        """A plain (non-cluster) client to one node; closed when the cluster stops."""
        client = redis.Redis(port=node.port, socket_timeout=10, **kwargs)
        self._clients.append(client)
        return client

    def owner(self, key: bytes | str) -> Node:
        """The master whose slots hold ``key`` (as assigned at the start)."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        return next(n for n in self.masters if n.slots is not None and slot in n.slots)

    def restart(self, node: Node) -> None:
        """Start a stopped (or killed) node again, on its port and with its directory: it
        rejoins from its nodes.conf, as a replica of whoever took over its slots."""
        if node.proc.poll() is None:
            raise AssertionError(f"node {node.port} is still running")
        node.proc = _start(self._binary, node.port, node.directory, self._extra)
        wait_for(lambda: self.client(node).ping(), 30, f"node {node.port} to start again")

    def other_than(self, node: Node) -> Node:
        """A master other than ``node``."""
        return next(n for n in self.masters if n is not node)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (redis.exceptions.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        threading.Event().wait(0.05)


def _start(binary: str, port: int, directory: Path, extra: Sequence[str]) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
         "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _ranges(count: int) -> list[range]:
    bounds = [SLOTS * i // count for i in range(count + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(count)]


def _stop(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.terminate()
    for node in nodes:
        try:
            node.proc.wait(10)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)


@contextlib.contextmanager
def cluster(
    directory: Path,
    masters: int = 3,
    replicas: int = 0,
    *,
    binary: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Iterator[Cluster]:
    """A running cluster of ``masters`` masters with ``replicas`` replicas each; see the module."""
    if masters < 1 or replicas < 0:
        raise ValueError(f"need masters >= 1 and replicas >= 0, got {masters} and {replicas}")
    if binary is None:
        from taskqueue.embedded import find_server_binary

        binary = find_server_binary()
    root = Path(directory) / f"cluster-{time.monotonic_ns()}"
    nodes: list[Node] = []
    made = Cluster(nodes, _binary=binary, _extra=tuple(extra_args))
    try:
        ports: list[int] = []
        for _ in range(masters * (1 + replicas)):
            ports.append(free_cluster_port(ports))
        for port in ports:
            nodes.append(Node(port, root / str(port), _start(binary, port, root / str(port), extra_args)))
        admins = {n: made.client(n) for n in nodes}
        for node in nodes:
            wait_for(
                lambda n=node: n.proc.poll() is not None or admins[n].ping(), timeout, f"node {node.port}"
            )
            if node.proc.poll() is not None:
                raise AssertionError(f"cluster node on port {node.port} exited with {node.proc.returncode}")
            node.id = admins[node].execute_command("CLUSTER MYID").decode()
        for node, slots in zip(nodes[:masters], _ranges(masters), strict=True):
            node.slots = slots
            admins[node].execute_command("CLUSTER ADDSLOTS", *slots)
        for index, node in enumerate(nodes[masters:]):
            node.master = nodes[index // replicas]
        first = nodes[0]
        for node in nodes[1:]:
            admins[first].execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        everyone = len(nodes)
        for node in nodes:
            wait_for(
                lambda n=node: len(admins[n].execute_command("CLUSTER NODES")) == everyone,
                timeout,
                f"node {node.port} to know all {everyone} nodes",
            )
        for node in nodes[masters:]:
            assert node.master is not None
            admins[node].execute_command("CLUSTER REPLICATE", node.master.id)
        for node in nodes:
            wait_for(
                lambda n=node: admins[n].execute_command("CLUSTER INFO").get("cluster_state") == "ok",
                timeout,
                f"node {node.port} to say cluster_state:ok",
            )
        for node in nodes[masters:]:
            wait_for(
                lambda n=node: admins[n].info("replication").get("master_link_status") == "up",
                timeout,
                f"replica {node.port} to sync with its master",
            )
        yield made
    finally:
        for client in made._clients:
            client.close()
        _stop(nodes)
        shutil.rmtree(root, ignore_errors=True)


def move_slot(c: Cluster, slot: int, source: Node, target: Node, timeout: float = 30.0) -> None:
    """Move one slot and its keys from ``source`` to ``target`` as resharding does
    (IMPORTING/MIGRATING, MIGRATE of every key, then SETSLOT NODE on both)."""
    src, dst = c.client(source), c.client(target)
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.id)

    def moved() -> bool:
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        for client in (dst, src):
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.id)
        return True

    wait_for(moved, timeout, f"slot {slot} to move to {target.port}")
    for node in c.masters:
        wait_for(
            lambda n=node: serving(c, n, slot) == target.port,
            timeout,
            f"{node.port} to see slot {slot} moved",
        )


def serving(c: Cluster, node: Node, slot: int) -> int | None:
    """The port of the master that ``node`` says serves ``slot``."""
    for start, end, master, *_ in c.client(node).execute_command("CLUSTER SLOTS"):
        if int(start) <= slot <= int(end):
            return int(master[1])
    return None


__all__ = ["Cluster", "Node", "cluster", "free_cluster_port", "move_slot", "serving"]
