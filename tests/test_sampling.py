"""Tests of pipeline.training.sampling.TaskBatchSampler: proportional draws, reproducibility per
(seed, epoch), resumption, epoch-length rules and rank slicing."""
import numpy as np
import pytest

from pipeline.training.sampling import TaskBatchSampler, draw_proportional


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"AU": rng.random(100) * 2, "EXPR": rng.random(300), "VA": rng.random(50) + 0.5}


def _epoch(sampler: TaskBatchSampler, epoch: int, start_step: int = 0) -> list[dict[str, np.ndarray]]:
    """The steps of an epoch from ``start_step`` on, as the training loop reads them."""
    draws = sampler.epoch_draws(epoch)
    return [{task: d[step] for task, d in draws.items()} for step in range(start_step, sampler.steps_per_epoch)]


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[t], y[t]) for t in x) for x, y in zip(a, b))


def test_epoch_length_rules():
    # Sums of weights 100, 250 and 64 with N = 8: the smallest gives 64 // 8 = 8 steps.
    w = {"AU": np.full(50, 2.0), "EXPR": np.full(250, 1.0), "VA": np.full(128, 0.5)}
    sampler = TaskBatchSampler(w, batch_per_task=8, epoch_length="smallest")
    assert sampler.steps_per_epoch == 8
    batches = _epoch(sampler, 0)
    assert len(batches) == 8
    for batch in batches:
        assert list(batch) == ["AU", "EXPR", "VA"]
        for task, rows in batch.items():
            assert rows.dtype == np.int64 and rows.shape == (8,)
            assert rows.min() >= 0 and rows.max() < len(w[task])
    assert TaskBatchSampler(w, batch_per_task=8, epoch_length=3).steps_per_epoch == 3
    # Fewer expected draws than one batch still gives one step.
    assert TaskBatchSampler({"AU": np.ones(5)}, batch_per_task=8).steps_per_epoch == 1
    with pytest.raises(ValueError, match="epoch_length"):
        TaskBatchSampler(w, batch_per_task=8, epoch_length="largest")


def test_draws_follow_weights_and_skip_zero_weight_rows():
    w = np.array([0.0, 1.0, 0.0, 3.0, 0.0])
    sampler = TaskBatchSampler({"EXPR": w}, batch_per_task=40, epoch_length=1000, seed=1)
    rows = np.concatenate([b["EXPR"] for b in _epoch(sampler, 0)])
    counts = np.bincount(rows, minlength=5)
    assert counts[[0, 2, 4]].sum() == 0
    assert counts[3] / counts.sum() == pytest.approx(0.75, abs=0.01)   # 40000 draws: sd 0.002


class _FixedUniforms:
    """Stands in for a Generator: returns chosen 'uniform' values to hit the edges."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)

    def random(self, size):
        assert size == len(self.values)
        return self.values


def test_draw_proportional_edges_never_pick_zero_weight_rows():
    # Weights [1, 0, 2, 0, 0]: cumulative [1, 1, 3, 3, 3], total 3. u * 3 = 0 -> row 0;
    # exactly 1 (the boundary shared by rows 0 and 1) -> row 2, not the empty row 1;
    # 3 (u * total rounding up to the total) -> row 2, not the zero-weight tail.
    cumulative = np.cumsum([1.0, 0.0, 2.0, 0.0, 0.0])
    rows = draw_proportional(cumulative, 4, _FixedUniforms([0.0, 1 / 3, 0.5, 1.0]))
    assert rows.tolist() == [0, 2, 2, 2]
    assert rows.dtype == np.int64
    rows = draw_proportional(cumulative, 10000, np.random.default_rng(0))
    assert set(np.unique(rows).tolist()) == {0, 2}


def test_same_seed_and_epoch_reproduce_whatever_came_before():
    a = TaskBatchSampler(_weights(), batch_per_task=4, seed=5)
    b = TaskBatchSampler(_weights(), batch_per_task=4, seed=5)
    _epoch(b, 0)
    _epoch(b, 1)
    assert _same(_epoch(a, 2), _epoch(b, 2))
    assert not _same(_epoch(a, 2), _epoch(a, 3))
    c = TaskBatchSampler(_weights(), batch_per_task=4, seed=6)
    assert not _same(_epoch(a, 2), _epoch(c, 2))


def test_start_step_resumes_with_the_same_draws():
    sampler = TaskBatchSampler(_weights(), batch_per_task=4, seed=3)
    full = _epoch(sampler, 7)
    resumed = _epoch(TaskBatchSampler(_weights(), batch_per_task=4, seed=3), 7, start_step=5)
    assert len(resumed) == len(full) - 5
    assert _same(resumed, full[5:])


def test_a_task_draws_do_not_depend_on_the_other_tasks():
    w = _weights()
    all_tasks = TaskBatchSampler(w, batch_per_task=4, epoch_length=10, seed=2)
    au_only = TaskBatchSampler({"AU": w["AU"]}, batch_per_task=4, epoch_length=10, seed=2)
    full, alone = _epoch(all_tasks, 0), _epoch(au_only, 0)
    assert all(np.array_equal(x["AU"], y["AU"]) for x, y in zip(full, alone))


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_slices_are_disjoint_and_make_up_the_single_process_batch(world_size):
    single = _epoch(TaskBatchSampler(_weights(), batch_per_task=32, seed=4), 1)
    per_rank = [_epoch(TaskBatchSampler(_weights(), batch_per_task=32, seed=4,
                                        rank=r, world_size=world_size), 1) for r in range(world_size)]
    assert all(len(p) == len(single) for p in per_rank)
    for step, batch in enumerate(single):
        for task, rows in batch.items():
            slices = [p[step][task] for p in per_rank]
            assert sum(len(s) for s in slices) == 32
            # Rank r holds the batch positions r, r + world_size, ...: interleave them back.
            rebuilt = np.empty(32, dtype=np.int64)
            for r, s in enumerate(slices):
                rebuilt[r::world_size] = s
            np.testing.assert_array_equal(rebuilt, rows)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="EXPR"):
        TaskBatchSampler({"EXPR": np.zeros(4)}, batch_per_task=2)
    with pytest.raises(ValueError, match="EXPR"):
        TaskBatchSampler({"EXPR": np.array([1.0, -1.0])}, batch_per_task=2)
    with pytest.raises(ValueError, match="VA"):
        TaskBatchSampler({"VA": np.array([1.0, np.nan])}, batch_per_task=2)
    with pytest.raises(ValueError, match="rank"):
        TaskBatchSampler(_weights(), batch_per_task=4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        TaskBatchSampler(_weights(), batch_per_task=2, world_size=4)
