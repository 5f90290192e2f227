"""The heap settled once models load or unload: what is alive then is frozen out of the
collector's way, and what an unloaded model left in reference cycles is still freed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelyard.core.heap import HeapSettler, settle
from modelyard.core.models import ModelService
from tests import models


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> tuple[_Node, weakref.ref[_Node]]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a, weakref.ref(b)


def test_a_settled_heap_frees_frozen_cycles_at_the_next_settling() -> None:
    try:
        held, gone = _cycle()
        settle()
        assert gc.get_freeze_count() > 0
        del held  # a model unloaded: its cycle is frozen, and only a settling frees it
        gc.collect()
        assert gone() is not None  # frozen objects are not collected
        settle()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_a_burst_of_requests_settles_once() -> None:
    async def main() -> int:
        settler = HeapSettler(after_s=0.05)
        for _ in range(5):
            settler.request()
        await asyncio.sleep(0.2)
        settler.close()
        return settler.settled

    assert asyncio.run(main()) == 1
    assert gc.get_freeze_count() == 0


def test_the_model_service_settles_after_a_load_and_an_unload(tmp_path: Path) -> None:
    models.addsub_onnx(tmp_path / "addsub" / "1" / "model.onnx")

    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            service = ModelService([tmp_path], executor, control_mode="explicit")
            service.heap = HeapSettler(after_s=0.01)
            await service.start()
            try:
                await service.load("addsub")
                await asyncio.sleep(0.3)
                assert service.heap.settled == 1
                assert gc.get_freeze_count() > 0
                await service.unload("addsub")
                await asyncio.sleep(0.3)
                assert service.heap.settled == 2
            finally:
                await service.close()
            assert gc.get_freeze_count() == 0  # given back when the service closes

    asyncio.run(main())
