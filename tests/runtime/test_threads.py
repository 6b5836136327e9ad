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


# --- the Python API picks threads as the CLI does (issue 28.4) ----------------------------------


@pytest.fixture()
def fresh_process(monkeypatch):
    """As if no thread count had been chosen in this process; torch's and OpenCV's put back."""
    import cv2
    import torch

    import runtime.threads as threads

    before = torch.get_num_threads(), cv2.getNumThreads()
    monkeypatch.setattr(threads, "_PROCESS", threads.ProcessThreads())
    yield threads
    torch.set_num_threads(before[0])
    cv2.setNumThreads(before[1])


def _counts() -> tuple[int, int]:
    import cv2
    import torch

    return torch.get_num_threads(), cv2.getNumThreads()


def test_create_tracker_picks_threads_from_the_free_cores_once(fresh_process, monkeypatch):
    from runtime.registry import create_tracker

    free = iter([1, 2])  # what default_threads would say at the first and a later call
    monkeypatch.setattr(fresh_process, "default_threads", lambda: next(free))
    create_tracker("cv2-kcf")
    assert _counts() == (1, 1)
    # A later tracker keeps the choice: measured now, the load would count this process's work.
    create_tracker("cv2-kcf")
    assert _counts() == (1, 1)


def test_threads_argument_overrides_and_later_trackers_keep_it(fresh_process, monkeypatch):
    from runtime.multi_target import create_multi_tracker
    from runtime.registry import create_tracker

    monkeypatch.setattr(fresh_process, "default_threads", lambda: 1)
    create_tracker("cv2-kcf", threads=2)
    assert _counts() == (2, 2)
    create_tracker("cv2-kcf")
    assert _counts() == (2, 2)
    create_multi_tracker("cv2-kcf", threads=1)
    assert _counts() == (1, 1)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        create_tracker("cv2-kcf", threads=0)


def test_a_count_the_process_chose_is_not_overridden(fresh_process, monkeypatch):
    # The CLI's --threads and the benchmarks' set the count first; the registry leaves it.
    from bench.trackers import make_tracker
    from runtime.registry import create_tracker

    monkeypatch.setattr(fresh_process, "default_threads", lambda: 1)
    fresh_process.set_threads(2)
    create_tracker("cv2-kcf")
    make_tracker("cv2-kcf")
    assert _counts() == (2, 2)
