"""The searches' walk along a grid: the argmin of a unimodal cost from fewer evaluations than the whole grid."""
from __future__ import annotations

import pytest

from bruno.reconstruction.tuning import descend_grid, grid_search_per_k

GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5)


@pytest.mark.parametrize("minimum", GRID)
def test_the_descent_finds_the_argmin_of_a_unimodal_cost_scoring_each_value_once(minimum: float) -> None:
    scored: list[float] = []

    def cost(value: float) -> float:
        scored.append(value)
        return (value - minimum) ** 2

    assert descend_grid(GRID, 1.0, cost, progress=False) == minimum
    assert len(scored) == len(set(scored))
    steps = abs(GRID.index(minimum) - GRID.index(1.0))
    if minimum < 1.0:  # the start, each step left, and the one past the minimum
        assert len(scored) == 1 + steps + (minimum != GRID[0])
    elif minimum > 1.0:  # the start, one step left that fails, each step right, and the one past the minimum
        assert len(scored) == 2 + steps + (minimum != GRID[-1])
    else:
        assert scored == [1.0, 0.9, 1.1]


def test_the_descent_keeps_the_start_on_ties_and_refuses_a_bad_grid() -> None:
    assert descend_grid(GRID, 1.0, lambda value: 0.0, progress=False) == 1.0
    assert descend_grid(GRID, 0.5, lambda value: (value > 0.7, -value), progress=False) == 0.7  # tuples order too
    with pytest.raises(ValueError, match="expected strictly ascending values that hold the start"):
        descend_grid((1.0, 0.5), 1.0, abs, progress=False)
    with pytest.raises(ValueError, match="hold the start"):
        descend_grid(GRID, 0.95, abs, progress=False)


def test_a_descent_per_k_yields_the_scored_rows_in_grid_order() -> None:
    def scores_at(k: int, value: float) -> dict[str, float]:
        return {"loss": abs(value - 0.1 * k - 0.5)}

    found = {k: (value, rows) for k, value, rows, _ in grid_search_per_k(
        [3, 7], "tau", GRID, scores_at, "k = {k}", progress=False, order=lambda scores: scores["loss"], start=1.0)}
    assert found[3][0] == 0.8 and [row["tau"] for row in found[3][1]] == [0.7, 0.8, 0.9, 1.0]
    assert found[7][0] == 1.2 and [row["tau"] for row in found[7][1]] == [0.9, 1.0, 1.1, 1.2, 1.35]
    assert found[7][1][3] == {"tau": 1.2, "loss": pytest.approx(0.0)}
    with pytest.raises(ValueError, match="a descent needs the order"):
        next(grid_search_per_k([1], "tau", GRID, scores_at, "", progress=False, start=1.0))
