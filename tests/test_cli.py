"""The nasp command end to end."""

import json
import os
import shlex
import subprocess
import sys

import pytest
from conftest import SHARED_DATA

from nasp.apps.cli import EXAMPLES, build_parser, main

TINY = ["search", "--preset", "tiny", "--epochs", "1", "--subset", "64", "--no-progress",
        "--no-plots"]


def test_search_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    with_plots = [a for a in TINY if a != "--no-plots"]
    assert main([*with_plots, "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "child val" in printed
    assert "  cell: normal: 2<-" in printed and "search done: 1 epochs" in printed
    assert str(out) in printed
    for name in ("config.yaml", "metrics.jsonl", "arch.pt", "genotype.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    genotype = json.loads((out / "genotype.json").read_text())
    assert len(genotype["normal"]) == 8
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert len(record["arch"]["normal"]) == 14
    for picture in ("cell_normal.png", "cell_reduce.png", "curves.png", "arch_evolution.png"):
        assert (out / picture).stat().st_size > 0, picture


def test_options_reach_the_config(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--out", str(out), "--primitives", "nasp-12", "--layers", "4",
            "--channels", "6", "--batch-size", "16", "--size-penalty", "0.5",
            "--strategy", "nasp"]
    assert main(args) == 0
    config = (out / "config.yaml").read_text()
    for line in ("primitives: nasp-12", "layers: 4", "channels: 6", "batch_size: 16",
                 "size_penalty: 0.5", "subset: 64"):
        assert line in config


def test_missing_data_directory_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main([*TINY, "--dataset", "cifar10", "--data-dir", str(missing),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_option_value_is_a_clear_error(tmp_path, capsys):
    assert main([*TINY, "--channels", "5", "--out", str(tmp_path / "r")]) == 2
    assert "--channels" in capsys.readouterr().err


def test_existing_run_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    before = (out / "metrics.jsonl").read_text()
    assert main([*TINY, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == before
    assert main([*TINY, "--out", str(out), "--overwrite"]) == 0


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "nasp", "search", "--help"],
                            capture_output=True, text=True, env={**os.environ}, check=False)
    assert result.returncode == 0
    assert "--size-penalty" in result.stdout


@pytest.mark.skipif(not (SHARED_DATA / "cifar-10-batches-py").is_dir(),
                    reason="CIFAR-10 not found at ../shared/data (a fresh clone has no data)")
def test_cifar10_search_runs(tmp_path):
    out = tmp_path / "cifar"
    code = main(["search", "--dataset", "cifar10", "--data-dir", str(SHARED_DATA),
                 "--subset", "128", "--epochs", "1", "--layers", "3", "--channels", "4",
                 "--batch-size", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    assert (out / "genotype.json").exists()


def test_version(capsys):
    import nasp

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"nasp {nasp.__version__}\n"


def help_of(argv, monkeypatch, capsys, columns=80):
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_every_help_ends_with_one_runnable_example(monkeypatch, capsys):
    """The example parses, as does the command that makes its input; descriptions stay
    wrapped to the terminal."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(EXAMPLES) == {"nasp", *commands}
    for name in EXAMPLES:
        text = help_of([] if name == "nasp" else [name], monkeypatch, capsys)
        command, after = EXAMPLES[name]
        heading = f"example (after: {after}):" if after else "example:"
        assert text.endswith(f"\n\n{heading}\n  {command}\n"), (name, text[-300:])
        assert text.count("example") == 1, name
        first = [command.split()[0] for command in (command, after) if command]
        assert first == ["nasp"] * len(first), name
        for example in filter(None, (command, after)):
            build_parser().parse_args(shlex.split(example)[1:])
    assert "Search a cell architecture with NASP (or a DARTS baseline). With no options it\n" \
           "searches" in help_of(["search"], monkeypatch, capsys)


def test_the_examples_of_trained_models_run(tmp_path, monkeypatch, capsys):
    """test, export, plot and info: their examples, after the training example they name."""
    monkeypatch.chdir(tmp_path)
    for name in ("train", "test", "export", "plot", "info"):
        if name == "plot":
            pytest.importorskip("matplotlib")
        assert main(shlex.split(EXAMPLES[name][0])[1:]) == 0, name
    printed = capsys.readouterr().out
    assert "runs/digits/last.pt (epoch 2) on the 360 test images of digits" in printed
    assert (tmp_path / "digits.ts").is_file() and (tmp_path / "runs/digits/curves.png").is_file()
    assert "20 cells, C 36" in printed
