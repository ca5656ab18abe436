"""The summary table in a terminal: split into parts that fit 120 columns, the arm in each."""

from __future__ import annotations

from fedpriv.cli.tables import print_summary


def test_a_wide_summary_is_split_to_fit_and_keeps_every_cell(capsys):
    header = ["arm", *(f"a rather long column header number {i}" for i in range(11))]
    rows = [
        [name, *(f"0.{i}{len(name)} ({name}-attack)" for i in range(11))]
        for name in ("plaintext", "ckks-threshold", "ckks-memguard")
    ]
    print_summary(header, rows, width=120)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert out.count("fedpriv comparison") >= 2  # split into parts
    for row in rows:
        for cell in row[1:]:
            assert cell in out  # cells stay whole
        assert out.count(f"│ {row[0]} ") == out.count("fedpriv comparison")  # arm in each part
