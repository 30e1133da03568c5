"""Delivery: each kind of job goes to the arq function whose time bound fits it."""

from pathlib import Path

from arq.constants import job_key_prefix
from arq.jobs import Job as ArqJob

from engine.constants import (
    INVENTORY_FUNCTION,
    INVENTORY_TIMEOUT_S,
    JOB_TIMEOUT_S,
    QUEUE_NAME,
    RECONCILE_FUNCTION,
)
from engine.jobs.queue import JobQueue, arq_job_id
from engine.jobs.worker import SharedServices, build_worker
from engine.settings import Settings
from engine.storage.models import Job, JobKind, Lane, new_id


async def test_an_inventory_is_delivered_with_its_longer_bound(redis_url: str) -> None:
    """An inventory lists every account of an app, page after page: it is delivered to the
    function arq lets run INVENTORY_TIMEOUT_S, a reconcile to the one bounded by
    JOB_TIMEOUT_S; every worker serves both."""
    queue = await JobQueue.connect(redis_url)
    inventory = Job(id=new_id(), integration_id=new_id(), kind=JobKind.inventory)
    reconcile = Job(id=new_id(), integration_id=new_id(), identity_id=new_id())
    try:
        for job in (inventory, reconcile):
            assert await queue.enqueue(job, defer_s=3600)
        functions = {}
        for job in (inventory, reconcile):
            info = await ArqJob(arq_job_id(job), queue.redis, _queue_name=QUEUE_NAME).info()
            assert info is not None
            functions[job.kind] = info.function
        assert functions == {
            JobKind.inventory: INVENTORY_FUNCTION,
            JobKind.reconcile: RECONCILE_FUNCTION,
        }
    finally:
        for job in (inventory, reconcile):
            await queue.redis.zrem(QUEUE_NAME, arq_job_id(job))
            await queue.redis.delete(job_key_prefix + arq_job_id(job))
        await queue.redis.aclose()

    settings = Settings(data_dir=Path("unused"))
    for lane in Lane:
        worker = build_worker(settings, redis_url, SharedServices(settings), lane=lane)
        bounds = {  # as arq bounds a run: the function's own timeout, else the worker's
            name: function.timeout_s or worker.job_timeout_s
            for name, function in worker.functions.items()
        }
        assert bounds == {
            INVENTORY_FUNCTION: INVENTORY_TIMEOUT_S,
            RECONCILE_FUNCTION: JOB_TIMEOUT_S,
        }
