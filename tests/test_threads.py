"""Thread counts from the cores actually free (issue 19 item 7: 2 threads on 2 cores with one
busy made metartt ~20x slower)."""

from __future__ import annotations

import pytest

from runtime.threads import default_threads, usable_cores


@pytest.fixture(autouse=True)
def _no_user_choice(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize(
    ("cores", "load", "threads"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 1.1, 1), (2, 1.6, 1), (2, 7.0, 1), (16, 3.2, 13)],
)
def test_threads_are_the_cores_not_already_busy(cores, load, threads):
    assert default_threads(cores=cores, load=load) == threads


def test_the_users_omp_num_threads_wins_and_a_bad_value_is_ignored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(cores=2, load=2.0) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    assert default_threads(cores=2, load=0.0) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "0")
    assert default_threads(cores=2, load=0.0) == 2


def test_this_machine_has_at_least_one_usable_core():
    assert usable_cores() >= 1
    assert 1 <= default_threads() <= max(usable_cores(), 1)
