"""The data order: a deterministic, resumable stream sharded over ranks like DistributedSampler."""

from __future__ import annotations

from clay_core.train import TrainingOrder


def test_training_order_shards_like_distributed_sampler() -> None:
    def take(order: TrainingOrder, n: int) -> list[tuple[int, int]]:
        stream = iter(order)
        return [next(stream) for _ in range(n)]

    rank0 = take(TrainingOrder(7, seed=3, rank=0, world_size=2), 4)
    rank1 = take(TrainingOrder(7, seed=3, rank=1, world_size=2), 4)
    assert {e for e, _ in rank0 + rank1} == {0}
    assert {i for _, i in rank0 + rank1} == set(range(7))  # one epoch covers every chip (one padded repeat)
    # Starting at an offset continues the same stream (what --resume relies on).
    full = take(TrainingOrder(7, seed=3), 12)
    assert take(TrainingOrder(7, seed=3, start=5), 7) == full[5:]
    assert [e for e, _ in full] == [0] * 7 + [1] * 5
    assert sorted(i for _, i in full[:7]) == list(range(7))
