"""Quality against NFE for a teacher and its reflowed students: a markdown table and a
figure.

Images are judged by FID (the reference's feature network, samples ``i`` from noise
seeded by ``(seed, i)``), 2-D data by the sliced Wasserstein distance to held-out data;
every model also gets its straightness ``S`` (Liu et al.; 0 means straight paths at
constant speed) along 100 Euler steps, unless it is left out (``straightness_num=0``: it means
little on a VP path, where the velocity diverges at the data end).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from flowkit.evaluation.sliced import sliced_wasserstein
from flowkit.evaluation.straightness import straightness
from flowkit.files import write_json, write_text
from flowkit.loading import load


@dataclass
class Judge:
    """How samples are scored: ``fid`` against ``reference`` (a stats ``.npz``), or
    ``sw`` against ``held_out`` points ``(M, 2)``."""

    metric: str
    num: int
    reference: str | None = None
    held_out: torch.Tensor | None = None
    device: torch.device | None = None
    progress: bool = True
    seed: int = 0

    def score(self, model_dir: Path, nfe: int | None, method: str) -> tuple[float, int]:
        """``(score, nfe used)`` of ``model_dir`` sampled with ``method``."""
        if self.metric == "fid":
            from flowkit.evaluation.fid import fid

            result = fid(
                str(model_dir),
                self.reference,
                nfe=nfe,
                num=self.num,
                method=method,
                seed=self.seed,
                device=self.device,
                progress=self.progress,
            )
            return result.fid, int(result.nfe)
        out = draw(model_dir, self.num, nfe, method, self.seed, self.device)
        return float(sliced_wasserstein(out.x.cpu(), self.held_out)), out.nfe


def draw(model_dir: Path, num: int, nfe: int | None, method: str, seed: int = 0, device=None):
    """``num`` samples of the model at ``model_dir`` (a :class:`SampleResult`)."""
    model = load(model_dir).to(device or torch.device("cpu"))
    return model.sample(range(num), seed, nfe=nfe, method=method)


@dataclass
class Row:
    """One model's line of the table."""

    name: str
    scores: dict[int, float]  # Euler NFE -> score
    straightness: float | None  # None: not measured
    reference_score: float | None = None  # the teacher at its own (many-step) solver
    reference_nfe: int | None = None
    reference_method: str | None = None


def model_straightness(model_dir: Path, num: int, seed: int = 0, device=None) -> float:
    """``S`` of the model at ``model_dir`` from ``num`` seeded noises, 100 Euler steps."""
    model = load(model_dir).to(device or torch.device("cpu"))
    x0 = model.noise(range(num), seed).to(model.device) * model.path.prior_std
    return straightness(model.field, x0, nfe=100, path=model.path)


def evaluate_row(
    name: str,
    model_dir: Path,
    judge: Judge,
    nfes: list[int],
    reference_solver: tuple[str, int | None] | None = None,
    straightness_num: int = 1000,
    method: str = "euler",
) -> Row:
    """Score ``model_dir`` at each NFE of ``method`` (Euler by default; ``"ddim"`` for
    diffusion models) and with ``reference_solver`` ``(method, nfe)`` when given; straightness
    from ``straightness_num`` samples (0: not measured). Says what it is doing as it goes
    (rank 0, when the judge shows progress)."""

    def say(what: str) -> None:
        if judge.progress:
            print(f"report: {name}: {what}", flush=True)

    scores = {}
    for n in nfes:
        say(f"{judge.metric} of {judge.num} samples at {n} {method} NFE")
        scores[n] = judge.score(model_dir, n, method)[0]
    measured = None
    if straightness_num > 0:
        say(f"straightness of {straightness_num} samples (100 Euler steps)")
        measured = model_straightness(model_dir, straightness_num, device=judge.device)
    row = Row(name, scores, measured)
    if reference_solver is not None:
        ref_method, ref_nfe = reference_solver
        say(f"{judge.metric} of {judge.num} samples with {ref_method} at {ref_nfe} NFE")
        row.reference_score, row.reference_nfe = judge.score(model_dir, ref_nfe, ref_method)
        row.reference_method = ref_method
    return row


def markdown_table(rows: list[Row], metric: str, num: int, features: str | None) -> str:
    """The table: one row per model, one column per NFE, then straightness (left out when no
    row measured it)."""
    nfes = sorted({n for row in rows for n in row.scores})
    label = (
        f"FID ({features} features, {num} samples)"
        if metric == "fid"
        else (f"sliced Wasserstein ({num} samples)")
    )
    head = [
        "model",
        *[f"{label} @ {n} NFE" if k == 0 else f"@ {n} NFE" for k, n in enumerate(nfes)],
    ]
    with_straightness = any(row.straightness is not None for row in rows)
    head += ["teacher solver", "straightness"] if with_straightness else ["teacher solver"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.name, *[f"{row.scores[n]:.3f}" if n in row.scores else "" for n in nfes]]
        reference = (
            f"{row.reference_score:.3f} ({row.reference_method}, {row.reference_nfe} NFE)"
            if row.reference_score is not None
            else ""
        )
        cells.append(reference)
        if with_straightness:
            cells.append("" if row.straightness is None else f"{row.straightness:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_rows(rows: list[Row], path: str | os.PathLike) -> None:
    """The rows as JSON, atomically."""
    write_json(path, [asdict(row) for row in rows])


def report_figure(
    model_dirs: dict[str, Path],
    rows: list[Row],
    teacher: tuple[str, Path, str, int | None],
    path: str | os.PathLike,
    judge: Judge,
    method: str = "euler",
) -> Path:
    """Samples at 1 NFE of ``method`` (Euler; ``"ddim"`` for diffusion models) of every model
    beside the teacher's many-step samples (64 images, or ``judge.num`` points over the
    held-out data), above the score-versus-NFE curves.

    Args:
        teacher: ``(name, model_dir, method, nfe)`` of the teacher's reference solver.
    """
    from flowkit.data.plots import image_grid, scatter_image
    from flowkit.experiments.figures import save_report_figure

    def picture(model_dir: Path, nfe: int | None, method: str):
        if judge.metric == "fid":
            return image_grid(draw(model_dir, 64, nfe, method, judge.seed, judge.device).x.cpu())
        samples = draw(model_dir, judge.num, nfe, method, judge.seed, judge.device).x.cpu()
        return scatter_image(samples, reference=judge.held_out)

    name, teacher_dir, teacher_method, nfe = teacher
    panels = [
        (f"{label}, 1 NFE", picture(folder, 1, method)) for label, folder in model_dirs.items()
    ]
    panels.append(
        (f"{name}, {teacher_method} {nfe or 'adaptive'}", picture(teacher_dir, nfe, teacher_method))
    )
    curves = {row.name: sorted(row.scores.items()) for row in rows}
    ylabel = "FID" if judge.metric == "fid" else "sliced Wasserstein"
    return save_report_figure(panels, curves, path, ylabel=ylabel)


def _is_main() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def fid_judge(
    data: str | os.PathLike,
    reference: str | os.PathLike,
    num: int,
    device: torch.device | None = None,
    progress: bool = True,
) -> Judge:
    """A FID judge against the statistics of ``data`` (a built-in image set or a folder),
    cached at ``reference``: computed when missing (every rank takes part, rank 0 saves)."""
    from flowkit.distributed import barrier
    from flowkit.evaluation.fid import dataset_stats

    reference = Path(reference)
    if not reference.is_file():
        stats = dataset_stats(data, device=device, progress=progress)
        if _is_main():
            stats.save(reference)
        barrier()
    return Judge("fid", num, reference=str(reference), device=device, progress=progress)


def write_report(
    out: Path,
    rows: list[Row],
    judge: Judge,
    models: dict[str, Path],
    teacher: tuple[str, Path, str, int | None],
    method: str = "euler",
    note: str = "",
) -> None:
    """On rank 0: ``out/report.md`` (``note`` then the table), ``out/report.json`` and
    ``out/report.png`` (:func:`report_figure`), each written atomically."""
    if not _is_main():
        return
    features = None
    if judge.metric == "fid":
        from flowkit.evaluation.stats import load_stats

        features = load_stats(judge.reference).extractor
    table = note + markdown_table(rows, judge.metric, judge.num, features)
    write_text(out / "report.md", table)
    save_rows(rows, out / "report.json")
    report_figure(models, rows, teacher, out / "report.png", judge, method=method)
