"""Quality-against-NFE reports: scores per Euler NFE, straightness, the table."""

import torch

from flowkit.data import sample_toy
from flowkit.experiments.nfe_report import Judge, Row, evaluate_row, markdown_table, report_figure
from flowkit.models import MLPField


def test_a_constant_field_is_straight_and_its_score_does_not_depend_on_nfe(tmp_path):
    torch.manual_seed(0)
    model = MLPField(dim=2, hidden_dim=8, num_layers=2)
    with torch.no_grad():  # v(x, t) = bias of the last layer: a constant velocity
        for p in model.parameters():
            p.zero_()
        model.output[-1].bias.copy_(torch.tensor([0.5, -0.25]))
    model.save_pretrained(tmp_path / "m")
    judge = Judge("sw", 500, held_out=sample_toy("checkerboard", 500, seed=1))
    row = evaluate_row("const", tmp_path / "m", judge, [1, 2, 4], ("rk4", 8))
    assert row.straightness < 1e-10
    assert abs(row.scores[1] - row.scores[4]) < 1e-5 and row.reference_nfe == 8
    figure = report_figure(
        {"const": tmp_path / "m"},
        [row],
        ("const", tmp_path / "m", "rk4", 8),
        tmp_path / "r.png",
        judge,
    )
    assert figure.is_file()


def test_markdown_table_lists_every_nfe_and_the_teacher_solver():
    rows = [
        Row("1-RF (teacher)", {1: 40.0, 2: 5.5, 4: 0.81}, 0.0512, 0.09, 32, "rk4"),
        Row("2-RF", {1: 2.0, 2: 1.0, 4: 0.5}, 0.0011),
    ]
    table = markdown_table(rows, "fid", 2000, "digits").splitlines()
    assert table[0].startswith("| model | FID (digits features, 2000 samples) @ 1 NFE | @ 2 NFE")
    assert table[2] == "| 1-RF (teacher) | 40.000 | 5.500 | 0.810 | 0.090 (rk4, 32 NFE) | 0.0512 |"
    assert table[3] == "| 2-RF | 2.000 | 1.000 | 0.500 |  | 0.0011 |"


def test_straightness_can_be_left_out_and_the_figure_sampled_with_ddim(tmp_path):
    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=8, num_layers=2, prediction="x0").save_pretrained(tmp_path / "m")
    judge = Judge("sw", 200, held_out=sample_toy("checkerboard", 200, seed=1))
    row = evaluate_row("x0", tmp_path / "m", judge, [1, 2], straightness_num=0, method="ddim")
    assert row.straightness is None and set(row.scores) == {1, 2}
    table = markdown_table([row], "sw", 200, None).splitlines()
    assert table[0].endswith("@ 2 NFE | teacher solver |") and table[2].count("|") == 5
    models, teacher = {"x0": tmp_path / "m"}, ("x0", tmp_path / "m", "ddim", 2)
    figure = report_figure(models, [row], teacher, tmp_path / "r.png", judge, method="ddim")
    assert figure.is_file()
