"""HMAC-SHA256 signing of envelopes, end to end: producers sign with the first
key, workers accept any configured key (rotation), and an unsigned, re-signed
or altered task is dead-lettered with reason ``bad-signature`` without running."""

from __future__ import annotations

import pytest

from taskqueue import Signature, TaskFailed, TaskQueue, TaskRegistry, TaskStatus, load_settings
from taskqueue.serialization import Envelope, Signer, decode, encode

from ..conftest import make_settings


@pytest.fixture
def make_signed(redis_url, redis_client):
    """Queues on one server sharing one registry, each with its own signing keys."""
    registry = TaskRegistry()
    made: list[TaskQueue] = []
    ran: list[tuple] = []

    def make(*keys: str) -> TaskQueue:
        q = TaskQueue(redis_url, settings=make_settings(security={"signing_keys": keys}), registry=registry)
        if "transfer" not in registry:
            q.task(name="transfer")(lambda amount, to: ran.append((amount, to)) or f"{amount} to {to}")
        made.append(q)
        return q

    yield make, ran
    for q in made:
        q.close()


def _refused(handle) -> str:
    with pytest.raises(TaskFailed):
        handle.result(timeout=10)
    record = handle.record()
    assert record.status == "DEAD" and record.attempts == 1
    return record.reason


def test_signed_tasks_run_and_unsigned_ones_are_dead_lettered(make_signed) -> None:
    make, ran = make_signed
    signed, unsigned = make("k1"), make()
    worker = make("k1")
    good = signed.enqueue(_call(5, "alice"))
    bad = unsigned.enqueue(_call(1_000_000, "mallory"))
    assert good.record().payload and signed.broker.client.hget(signed.broker.keys.task(good.id), "sig")
    with worker.running(workers=1):
        assert good.result(timeout=10) == "5 to alice"
        assert _refused(bad).startswith("bad-signature")
    assert ran == [(5, "alice")]
    (dead,) = worker.dead_letters()
    assert (dead.id, dead.args) == (bad.id, [1_000_000, "mallory"])  # kept for inspection


def test_key_rotation_accepts_every_listed_key_and_signs_with_the_first(make_signed) -> None:
    make, ran = make_signed
    old_producer, new_producer = make("old"), make("new", "old")
    during = make("new", "old")  # workers during the rotation accept both
    after = make("new")  # once the old key is dropped, its tasks are refused
    a = old_producer.enqueue(_call(1, "old-key"))
    b = new_producer.enqueue(_call(2, "new-key"))
    with during.running(workers=1):
        assert [a.result(timeout=10), b.result(timeout=10)] == ["1 to old-key", "2 to new-key"]
    c = old_producer.enqueue(_call(3, "old-key-late"))
    d = new_producer.enqueue(_call(4, "new-key-late"))
    with after.running(workers=1):
        assert d.result(timeout=10) == "4 to new-key-late"
        assert _refused(c).startswith("bad-signature")
    assert ran == [(1, "old-key"), (2, "new-key"), (4, "new-key-late")]
    payload = new_producer.broker.get_task(b.id).payload
    assert Signer(("new",)).verify(
        payload, new_producer.broker.client.hget(new_producer.broker.keys.task(b.id), "sig").decode()
    )


def test_a_tampered_stored_task_is_dead_lettered_not_run(make_signed) -> None:
    make, ran = make_signed
    q = make("secret")
    client, keys = q.broker.client, q.broker.keys
    changed_args = q.enqueue(_call(10, "bob"))
    changed_sig = q.enqueue(_call(20, "carol"))
    moved_sig = q.enqueue(_call(30, "dave"))
    # 1. Whoever can write to Redis rewrites the arguments and keeps the signature.
    envelope = decode(client.hget(keys.task(changed_args.id), "payload"))
    forged = Envelope(envelope.name, (10_000, "mallory"), envelope.kwargs, envelope.options)
    client.hset(keys.task(changed_args.id), "payload", encode(forged, max_bytes=10_000))
    # 2. ...or signs with a key of their own.
    client.hset(
        keys.task(changed_sig.id),
        "sig",
        Signer(("guess",)).sign(client.hget(keys.task(changed_sig.id), "payload")),
    )
    # 3. ...or moves a valid signature onto another payload.
    client.hset(keys.task(moved_sig.id), "sig", client.hget(keys.task(changed_args.id), "sig"))
    with q.running(workers=1):
        for handle in (changed_args, changed_sig, moved_sig):
            assert _refused(handle) == "bad-signature: the task is unsigned or its signature does not match"
    assert ran == []
    assert {d.id for d in q.dead_letters()} == {changed_args.id, changed_sig.id, moved_sig.id}
    assert all(h.status is TaskStatus.DEAD for h in (changed_args, changed_sig, moved_sig))


def test_what_signing_does_not_stop_a_copied_payload_runs_again(make_signed) -> None:
    """Documented limit: the signature covers the payload, not the task id, so a
    signed payload copied under a new id (a replay) verifies. Signing proves who
    made a payload; it neither stops replays nor hides the arguments."""
    make, ran = make_signed
    q = make("secret")
    client, keys = q.broker.client, q.broker.keys
    original = q.enqueue(_call(7, "erin"))
    stored = client.hgetall(keys.task(original.id))
    client.hset(keys.task("replayed"), mapping=stored)
    client.rpush(keys.queue("default"), "replayed")
    with q.running(workers=1):
        assert original.result(timeout=10) == "7 to erin"
        assert q.get("replayed").result(timeout=10) == "7 to erin"
    assert ran == [(7, "erin"), (7, "erin")]


def test_signing_keys_come_from_secrets_file_or_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".secrets.toml").write_text('[default.security]\nsigning_keys = ["file-new", "file-old"]\n')
    assert load_settings().security.signing_keys == ("file-new", "file-old")
    monkeypatch.setenv("TASK_QUEUE_SECURITY__SIGNING_KEYS", "env-new,env-old")
    settings = load_settings()
    assert settings.security.signing_keys == ("env-new", "env-old")
    assert "env-new" not in repr(settings) and "<2 key(s)>" in repr(settings)


def _call(amount, to) -> Signature:
    return Signature("transfer", (amount, to))
