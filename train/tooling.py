"""What every training tool here shares: settings, the run's plan, resumable state, the log.

``train/meta.py``, ``train/prune.py`` and ``train/mlt.py`` follow the same habits: dataclass
defaults overridden by ``--config JSON`` and ``--set KEY=VALUE`` (dotted keys reach nested
settings), a frozen :class:`TrainingPlan` (what to train on, where to write, when), an atomic
``last.pt`` that ``--resume`` continues from only with the same settings, a ``log.csv``
rewritten atomically at each checkpoint, and a ``training.png`` of it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from runtime.atomic import write_atomic
from runtime.cli.program import program_name
from runtime.paths import data_root
from runtime.specs import SpecError, parse_overrides

Config = TypeVar("Config")
Result = TypeVar("Result")


def apply_overrides(config: Config, overrides: dict[str, object]) -> Config:
    """``{"meta.gamma": 0.0, "steps": 10}`` -> the same config, changed (dotted keys nest)."""
    for key, value in overrides.items():
        target: object = config
        *path, last = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or last not in {
            f.name for f in dataclasses.fields(target)
        }:
            raise ValueError(f"unknown setting {key!r}")
        current = getattr(target, last)
        if isinstance(current, bool):
            value = value if isinstance(value, bool) else str(value).lower() in ("1", "true")
        elif isinstance(current, (int, float)) and not isinstance(value, bool):
            value = type(current)(value)  # type: ignore[call-arg]
        setattr(target, last, value)
    return config


def config_from_dict(cls: type[Config], data: dict) -> Config:
    """A ``cls()`` with the (nested) values of ``data``; settings it lacks keep their defaults."""

    def flat(prefix: str, d: dict) -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(f"{prefix}{k}.", v))
            else:
                out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
        return out

    return apply_overrides(cls(), flat("", data))


def parse_assignments(items: Iterable[str]) -> dict[str, object]:
    """``--set`` values ``["a.b=1", ...]`` -> ``{"a.b": 1}`` (:func:`runtime.specs.parse_overrides`;
    typed to each field by :func:`apply_overrides`)."""
    try:
        return parse_overrides(list(items))
    except SpecError as exc:
        raise SystemExit(f"error: --set: {exc}") from None


# ------------------------------------------------------------------------------------------
# The plan of one run
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """How far a run goes and when it writes: steps are counted from 0, written as ``step + 1``."""

    steps: int
    checkpoint_every: int
    val_every: int = 0  # 0: no validation

    def is_last(self, step: int) -> bool:
        return step + 1 == self.steps

    def writes_checkpoint(self, step: int) -> bool:
        return (step + 1) % self.checkpoint_every == 0 or self.is_last(step)

    def validates(self, step: int) -> bool:
        """At a checkpoint: whether that checkpoint is also validated."""
        return bool(self.val_every) and ((step + 1) % self.val_every == 0 or self.is_last(step))


@dataclass(frozen=True)
class TrainingPlan(Generic[Config]):
    """One training run, fixed before it starts: its settings, the data it trains on, the folder
    it writes, its schedule, and this process's place among the ``torchrun`` processes."""

    config: Config
    root: Path  # the shared data root: weights, the train split, train_extra, val
    extra_data: tuple[Path, ...]  # more training datasets (train.datasets.discover)
    out: Path  # the run folder
    artifact: str  # the runtime checkpoint's file name in ``out``
    schedule: Schedule
    resume: bool = False
    distributed: bool = False  # inside an initialized process group
    rank: int = 0
    world: int = 1

    @classmethod
    def create(
        cls,
        config: Config,
        root: Path,
        out: Path,
        artifact: str,
        resume: bool = False,
        extra_data: Iterable[Path] = (),
    ) -> TrainingPlan[Config]:
        """The plan for ``config`` (which has ``steps``, ``checkpoint_every`` and perhaps
        ``val_every``), in this process (rank and world from the process group, if any)."""
        distributed = dist.is_available() and dist.is_initialized()
        schedule = Schedule(
            config.steps,  # type: ignore[attr-defined]
            config.checkpoint_every,  # type: ignore[attr-defined]
            getattr(config, "val_every", 0),
        )
        return cls(
            config,
            root,
            tuple(extra_data),
            out,
            artifact,
            schedule,
            resume,
            distributed,
            dist.get_rank() if distributed else 0,
            dist.get_world_size() if distributed else 1,
        )

    @property
    def is_first(self) -> bool:
        """The process that logs and writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / self.artifact

    @property
    def state_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def log_path(self) -> Path:
        return self.out / "log.csv"

    @property
    def plot_path(self) -> Path:
        return self.out / "training.png"

    def step_rng(self, step: int) -> np.random.Generator:
        """One generator per (seed, step, rank): a resumed run draws exactly what it would have."""
        return np.random.default_rng([self.config.seed, step, self.rank])  # type: ignore[attr-defined]


def start_step(plan: TrainingPlan, resume_state: Callable[[], int]) -> int:
    """The first step to run: ``resume_state()`` (loads ``last.pt``, returns its step) with
    ``--resume``, else 0; refuses to start afresh over an earlier run's ``last.pt``."""
    if plan.resume:
        return resume_state()
    if plan.state_path.exists():
        raise SystemExit(f"error: {plan.out} already holds a run; pass --resume or another --out")
    return 0


def open_log(plan: TrainingPlan, start: int) -> list[dict[str, object]]:
    """The log rows of the steps before ``start`` (first process only) and, from the first
    process, the run's ``config.json``."""
    rows: list[dict[str, object]] = list(read_log(plan.log_path, start)) if plan.is_first else []
    if plan.is_first:
        text = json.dumps(asdict(plan.config), indent=2) + "\n"  # type: ignore[call-overload]
        write_atomic(plan.out / "config.json", text)
    return rows


def run_steps(
    plan: TrainingPlan,
    desc: str,
    resume_state: Callable[[], int],
    step: Callable[[int], dict[str, float]],
    write_checkpoint: Callable[[list[dict[str, object]], int], None],
) -> Path:
    """The training loop of a single-process run: from :func:`start_step` to the plan's last step,
    each ``step(i)``'s figures logged (with ``step`` and ``seconds``) and shown on the bar, and
    ``write_checkpoint(rows, i)`` on the plan's schedule. Returns the checkpoint's path."""
    start = start_step(plan, resume_state)
    rows = open_log(plan, start)
    bar = progress(plan, start, desc)
    for index in bar:
        began = time.perf_counter()
        figures = step(index)
        rows.append(
            {"step": index + 1, **figures, "seconds": round(time.perf_counter() - began, 4)}
        )
        bar.set_postfix(figures)
        if plan.schedule.writes_checkpoint(index):
            write_checkpoint(rows, index)
    return plan.checkpoint_path


def progress(plan: TrainingPlan, start: int, desc: str) -> tqdm:
    """The steps from ``start`` on, as a progress bar shown by the first process only."""
    return tqdm(
        range(start, plan.schedule.steps),
        initial=start,
        total=plan.schedule.steps,
        desc=desc,
        disable=not plan.is_first,
        dynamic_ncols=True,
    )


# ------------------------------------------------------------------------------------------
# Resumable state
# ------------------------------------------------------------------------------------------
def save_state(path: Path, step: int, config: object, **state: object) -> None:
    """``last.pt``: the step, the settings and ``state`` (state dicts), written atomically."""
    buffer = io.BytesIO()
    payload = {"step": step, "config": json.dumps(asdict(config), sort_keys=True), **state}
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def load_state(path: Path, config: object, free: Sequence[str] = ()) -> dict:
    """``last.pt``'s contents, if it was written with ``config``'s settings (``free`` aside).

    Compared through the dataclasses, so settings added since the run started take their
    defaults; a resumed run may change ``free`` ones (how far it goes, how often it writes).
    """
    if not path.is_file():
        raise SystemExit(f"error: --resume: no {path} (start without --resume)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved_config = config_from_dict(type(config), json.loads(state["config"]))
    saved = json.loads(json.dumps(asdict(saved_config)))
    mine = json.loads(json.dumps(asdict(config)))
    for key in free:
        saved.pop(key, None), mine.pop(key, None)
    if saved != mine:
        changed = sorted(k for k in mine if saved.get(k) != mine.get(k))
        raise SystemExit(f"error: --resume with different settings ({', '.join(changed)})")
    return state


# ------------------------------------------------------------------------------------------
# The log
# ------------------------------------------------------------------------------------------
def resume_into(plan: TrainingPlan, **stateful: object) -> int:
    """Load the plan's resume state into modules and optimizers (``name=object``: the state
    saved under that name); returns the step to continue from."""
    state = load_state(plan.state_path, plan.config, free=("steps", "checkpoint_every"))
    for name, target in stateful.items():
        target.load_state_dict(state[name])  # type: ignore[attr-defined]
    return int(state["step"])


def read_log(path: Path, up_to_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]


def write_log(path: Path, rows: list[dict[str, object]], fields: Sequence[str]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def plot_log(
    rows: list[dict[str, object]],
    path: Path,
    curves: Sequence[str],
    side: str,
    side_label: str,
    empty_side: str = "",
) -> None:
    """Left: ``curves`` per step (running means); right: ``side`` where logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([int(r["step"]) for r in rows])
    fig = Figure(figsize=(10, 3.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_side = fig.subplots(1, 2)
    for key in curves:
        values = np.array([float(r[key]) for r in rows])
        if np.isfinite(values).any():
            window = max(1, min(25, len(values) // 5))
            smooth = np.convolve(np.nan_to_num(values), np.ones(window) / window, mode="valid")
            ax_loss.plot(steps[window - 1 :], smooth, label=f"{key} (mean of {window})")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    points = [(int(r["step"]), float(r[side])) for r in rows if str(r.get(side, ""))]
    if points:
        ax_side.plot(*zip(*points, strict=True), marker="o" if len(points) < 50 else None)
    else:
        ax_side.text(0.5, 0.5, empty_side, ha="center")
    ax_side.set_xlabel("step")
    ax_side.set_ylabel(side_label)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    write_atomic(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------
# The command line every training tool shares
# ------------------------------------------------------------------------------------------
def add_common_arguments(parser: argparse.ArgumentParser, set_example: str) -> None:
    """``--data --train-data --config --set --threads --resume`` (the tool adds its own)."""
    parser.add_argument("--data", type=Path, help="data root (default: $TRACKER_DATA)")
    parser.add_argument(
        "--train-data",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="more training videos: an OTB-style folder, GOT-10k, LaSOT or ImageNet-VID (repeat)",
    )
    parser.add_argument("--config", type=Path, help="JSON of settings (a run's config.json works)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"any setting, e.g. {set_example}",
    )
    parser.add_argument("--threads", type=int, help="torch threads per process")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")


def settings(
    cls: type[Config],
    args: argparse.Namespace,
    variant: dict[str, object],
    flags: Sequence[str],
) -> Config:
    """Defaults < ``--config`` < the variant < the tool's own ``flags`` < ``--set``."""
    config = config_from_dict(cls, json.loads(args.config.read_text())) if args.config else cls()
    overrides = dict(variant)
    for flag in flags:
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    overrides.update(parse_assignments(args.set))
    try:
        config = apply_overrides(config, overrides)
    except (ValueError, AttributeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    return config


def run_processes(job: Callable[[], Result]) -> Result:
    """Run ``job`` in this process, inside a gloo process group when started by ``torchrun``.

    Missing data or weights, a val leak or a bad checkpoint (FileNotFoundError, ValueError)
    end the tool with one ``error:`` line.
    """
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("gloo")
    try:
        return job()
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        if distributed:
            dist.destroy_process_group()


def is_first_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ------------------------------------------------------------------------------------------
# The command line of the small trainers on a frozen base (train/nanotrack/*)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeededTool:
    """A trainer run as ``python train/<script>.py [--steps] [--seed] [--out] ...``, its run folder
    defaulting to ``runs/<run_dir>/seed<S>``, ending with ``what: PATH  (how to use it)``."""

    script: str
    description: str
    run_dir: str
    default_steps: int
    set_example: str
    what: str  # what the checkpoint is, for the last line
    use: Callable[[Path], str]  # how to use it (a bench.ope command)

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=program_name(f"python train/{self.script}"), description=self.description
        )
        steps = f"training steps (default {self.default_steps})"
        parser.add_argument("--steps", type=int, help=steps)
        parser.add_argument("--seed", type=int, help="seed of the crops and episodes (default 0)")
        parser.add_argument(
            "--out", type=Path, help=f"run folder (default runs/{self.run_dir}/seed<S>)"
        )
        add_common_arguments(parser, self.set_example)
        return parser

    def main(self, cls: type[Config], train: Callable[..., Path], argv: list[str] | None) -> int:
        args = self.parser().parse_args(argv)
        config = settings(cls, args, {}, ("steps", "seed"))
        out = args.out or Path("runs") / self.run_dir / f"seed{config.seed}"  # type: ignore[attr-defined]
        try:
            path = train(config, data_root(args.data), out, args.resume, args.train_data)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}")
            return 2
        print(f"{self.what}: {path}  ({self.use(path)})")
        return 0
