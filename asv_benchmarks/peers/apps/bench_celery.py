"""Celery in the comparison (worker: ``celery -A bench_celery worker -P threads -c 8``)."""

from bench_shared import URL, count_one
from celery import Celery

LABEL = "Celery"
BATCH_API = "one Producer"


def _broker_url(url: str) -> str:
    # kombu spells a unix socket redis+socket:///path
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


app = Celery("bench_celery", broker=_broker_url(URL))
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="bench.noop")
def noop() -> None:
    count_one()


def enqueue_one() -> None:
    noop.delay()


def enqueue_batch(count: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            noop.apply_async(producer=producer)
