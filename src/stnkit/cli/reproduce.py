"""``stnkit reproduce``: the paper's experiments as a resumable grid of ``stnkit train`` runs.

Each cell is one dataset, one model and one seed, trained by one ``stnkit train`` process with a named
recipe. Finished cells leave one small JSON file under ``--out`` (committed to the repository as the grid
fills in); a killed cell resumes from its last epoch (its run folder under ``--runs``). ``--report``
renders docs/paper-results.md from those files only, and a picture of what each transformer learned
from the run folders that exist (docs/img/paper/<dataset>-<model>.png).

The grids, the result files and the report are :mod:`stnkit.reproduce`; this module runs the cells.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from stnkit import robustness
from stnkit.cli.common import (
    CliError,
    add_data_root_argument,
    output_file,
    output_folder,
    positive_int,
    write_json,
)
from stnkit.engine import CHECKPOINT_NAME, METRICS_NAME, read_jsonl
from stnkit.engine.device import check_device_name
from stnkit.files import atomic_write_text
from stnkit.models import count_parameters
from stnkit.reproduce import (
    GLANCE_END,
    GLANCE_START,
    GRIDS,
    PICTURE_DIR,
    SEEDS,
    Cell,
    RobustnessFigure,
    cell_result,
    cells_of,
    is_selection,
    load_results,
    render_glance,
    render_pictures,
    render_report,
    replace_glance,
)
from stnkit.runs import load_run

__all__ = ["ROBUSTNESS_FOLDER", "add_parser", "cmd_reproduce"]

_TRAIN = [sys.executable, "-m", "stnkit", "train"]


def _device_argument(text: str) -> str:
    """argparse type: a device name of :func:`stnkit.engine.resolve_device` (checked for its form)."""
    try:
        return check_device_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _train_command(cell: Cell, seed: int, run_dir: Path, args: argparse.Namespace) -> list[str]:
    """The cell's ``stnkit train`` command (the part after ``stnkit`` is what the result records)."""
    command = [
        *_TRAIN,
        *cell.train_args(seed),
        "--threads",
        str(args.threads),
        "--out",
        str(run_dir),
        "--no-progress",
    ]
    if args.data_root:
        command += ["--data-root", args.data_root]
    if args.device != "cpu":  # CPU commands stay as they were, so older runs still resume
        command += ["--device", args.device]
    return command


def _run_cell(cell: Cell, seed: int, args: argparse.Namespace) -> Path:
    name = cell.run_name(seed, args.device)
    result_path = Path(args.out) / cell.grid / f"{name}.json"
    if result_path.is_file():
        return result_path
    run_dir = Path(args.runs) / cell.grid / name
    command = _train_command(cell, seed, run_dir, args)
    # A killed cell continues from its last finished epoch.
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    # The full command with --resume: `stnkit train` refuses to continue a run whose recipe differs.
    run = [*command, "--resume"] if resume else command
    print(f"stnkit reproduce: {name}: {shlex.join(run[3:])}", flush=True)
    if args.dry_run:
        return result_path
    status = subprocess.run(run, check=False).returncode
    if status != 0:
        raise CliError(f"cell {name} failed (stnkit train exited with {status}); rerun to resume")
    model, _, _ = load_run(run_dir / CHECKPOINT_NAME)
    records = read_jsonl(run_dir / METRICS_NAME)
    result = cell_result(
        cell, seed, records, command[3:], device=args.device, parameters=count_parameters(model)
    )
    write_json(result_path, result)
    return result_path


# --- the command --------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``stnkit reproduce``."""
    p = sub.add_parser(
        "reproduce",
        help="run the paper's experiments as a resumable grid; --report renders docs/paper-results.md",
        description=(
            "Train every cell of a grid (table1: FCN/CNN/ST-FCN/ST-CNN on R, RTS, P, E; tc; addition; "
            "gtsrb; mnist: the CNN and ST-CNN on plain MNIST for the robustness figure) for each seed, one "
            "`stnkit train` run per cell. Finished cells are skipped, a killed one resumes."
        ),
    )
    p.add_argument("grid", nargs="?", choices=[*GRIDS, "all"], help="which grid to run")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help=f"seeds (default {' '.join(map(str, SEEDS))}; selection cells run at seed {SELECTION_SEED} only "
        "unless --cells is given)",
    )
    p.add_argument("--cells", help="only cells whose name (DATASET-MODEL) matches this glob, e.g. 'rts-*'")
    p.add_argument("--out", default="results", help="folder of the result files (default results/)")
    p.add_argument(
        "--runs", default="runs/reproduce", help="folder of the run folders (default runs/reproduce)"
    )
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads per run (default 2)")
    p.add_argument(
        "--device",
        type=_device_argument,
        default="cpu",
        help="cpu (default), cuda or cuda:N; GPU runs are named NAME-sSEED-cuda and reported apart",
    )
    add_data_root_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--report",
        nargs="?",
        const="docs/paper-results.md",
        help=(
            "render the report from the result files (default path docs/paper-results.md), with a "
            "picture of each transformer whose run folder is under --runs (into img/paper/ beside it) "
            "and the pose sweep of `stnkit robustness --out OUT/robustness` where there is one, "
            "and stop"
        ),
    )
    p.add_argument(
        "--readme",
        metavar="FILE",
        help=(
            "with --report: also rewrite the glance (ours beside the paper per standing cell) between "
            f"the lines {GLANCE_START} and {GLANCE_END} of FILE"
        ),
    )
    p.set_defaults(func=cmd_reproduce)


# `stnkit robustness --out results/robustness`: the pose sweep the report shows, when it is there.
ROBUSTNESS_FOLDER = "robustness"


def _robustness_figure(folder: Path, image_dir: Path) -> RobustnessFigure | None:
    """The sweep under ``folder`` for the report, its plot copied beside the pictures; None if absent."""
    if not (folder / robustness.RESULT_NAME).is_file():
        return None
    try:
        summary = robustness.read_sweep(folder / robustness.RESULT_NAME)
        table = (folder / robustness.TABLE_NAME).read_text()
    except (robustness.SweepFileError, OSError, UnicodeDecodeError) as err:
        raise CliError(f"{folder}: not a usable stnkit robustness result: {err}") from err
    image = None
    if (folder / robustness.PLOT_NAME).is_file():
        image_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / robustness.PLOT_NAME, image_dir / robustness.PLOT_NAME)
        image = (PICTURE_DIR / robustness.PLOT_NAME).as_posix()
    return RobustnessFigure(summary=summary, table=table, image=image, folder=f"{_as_on_the_page(folder)}/")


def _readme_with_glance(path: str, glance: str) -> str:
    """The text of ``path`` with its glance block replaced (``--readme``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"--readme {path}: cannot read it ({err})") from err
    try:
        return replace_glance(text, glance)
    except ValueError as err:
        raise CliError(f"--readme {path}: {err}") from err


def _as_on_the_page(path: Path) -> str:
    """``path`` as the page names it: relative to the current folder where it lies under it, so no
    machine's own absolute path enters a committed page."""
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``stnkit reproduce``."""
    if args.report:
        output_file(args.report, "--report")
        if not Path(args.out).is_dir():  # a mistyped --out would render every row "not run yet"
            raise CliError(
                f"--out {args.out}: not a folder of result files (expected {args.out}/<grid>/*.json)"
            )
        results = load_results(args.out)
        if not results:  # nor would a folder without any: the page's every row would go
            raise CliError(f"--out {args.out}: no result files in it (expected {args.out}/<grid>/*.json)")
        # The README is checked before the page is written: a file without the markers fails first.
        readme_text = _readme_with_glance(args.readme, render_glance(results)) if args.readme else ""
        image_dir = Path(args.report).parent / PICTURE_DIR
        pictures = render_pictures(results, Path(args.runs), image_dir, data_root=args.data_root)
        figure = _robustness_figure(Path(args.out) / ROBUSTNESS_FOLDER, image_dir)
        report = render_report(results, pictures, figure)
        atomic_write_text(args.report, report)
        print(f"stnkit reproduce: wrote {args.report}")
        if args.readme:
            atomic_write_text(args.readme, readme_text)
            print(f"stnkit reproduce: wrote the glance into {args.readme}")
        return 0
    if args.readme:
        raise CliError("--readme goes with --report (it rewrites a README's glance from the result files)")
    if args.grid is None:
        raise CliError(f"name a grid ({', '.join(GRIDS)} or all), or pass --report")
    cells = cells_of(args.grid, args.cells)
    if not cells:
        raise CliError(f"no cell of {args.grid!r} matches --cells {args.cells!r}")
    runs = _runs_in_order(cells, args.seeds, selection_seeds_named=args.cells is not None)
    skipped = len(cells) * len(args.seeds) - len(runs)
    if skipped:
        print(
            f"stnkit reproduce: {skipped} selection runs left out: selection cells choose a recipe at "
            f"seed {SELECTION_SEED} only (name them with --cells to run other seeds)",
            flush=True,
        )
    if not args.dry_run:  # before the first cell: a failed cell's message says "rerun to resume"
        output_folder(Path(args.runs), "--runs")
        output_folder(Path(args.out), "--out")
    for cell, seed in runs:
        _run_cell(cell, seed, args)
    return 0


# A selection cell chooses a recipe on the validation split; the final cells carry the seeds.
SELECTION_SEED = 0


def _runs_in_order(
    cells: list[Cell], seeds: list[int], *, selection_seeds_named: bool
) -> list[tuple[Cell, int]]:
    """The ``(cell, seed)`` runs to make, in order.

    The headline cells (CNN vs ST-CNN affine) with every seed first; within each group seed-major,
    every cell once before any cell twice, so a partial grid covers the most cells. Selection cells
    run at :data:`SELECTION_SEED` only, unless ``--cells`` named the cells to run.
    """
    return [
        (cell, seed)
        for headline in (True, False)
        for seed in seeds
        for cell in cells
        if cell.is_headline == headline
        and (selection_seeds_named or seed == SELECTION_SEED or not is_selection(cell))
    ]
