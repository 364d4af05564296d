"""The Celery application of compare.py: one trivial task, Redis as broker and result store."""

import os

from celery import Celery

app = Celery("celery_app", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])
app.conf.update(worker_prefetch_multiplier=64, task_acks_late=False, result_expires=600, broker_connection_retry_on_startup=True)


@app.task
def noop(i):
    return i
