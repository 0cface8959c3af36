"""The ``python -m sam`` parser without a model: the app's flag spellings accepted too, ``--help`` in plain words,
and the shared rules (output size, latent mask) each in one helper."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from sam import cli
from sam.cli import batch
from sam.cli import parser as cli_parser

DATA = ["--data_path", "photos", "--exp_dir", "out"]
MODEL_COMMANDS = {"inference": DATA, "side-by-side": DATA, "reference-guided": DATA + ["--ref_images_paths_file", "r"],
                  "style-mixing": DATA, "lifespan": DATA, "evaluate": DATA,
                  "video": ["--input", "in.mp4", "--output", "out.mp4"]}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    ap = cli.build_parser()
    subs = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {"python -m sam": ap, **subs}


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_the_apps_flag_spellings_are_accepted(command):
    rest = MODEL_COMMANDS[command]
    parse = cli.build_parser().parse_args
    app = parse([command, "--checkpoint", "a.pt", "--int8-style-heads", *rest])
    script = parse([command, "--checkpoint_path", "a.pt", "--int8_style_heads", *rest])
    assert app.checkpoint_path == script.checkpoint_path == "a.pt"
    assert app.int8_style_heads is script.int8_style_heads is True
    assert parse([command, *rest]).int8_style_heads is False


def test_weights_takes_the_apps_spellings_too():
    parse = cli.build_parser().parse_args
    app = parse(["weights", "--checkpoint", "w.pt", "--no-download"])
    script = parse(["weights", "--checkpoint_path", "w.pt", "--no_download"])
    assert app.checkpoint_path == script.checkpoint_path == "w.pt" and app.no_download and script.no_download
    assert parse(["weights", "--check", "c.pt"]).check == "c.pt"  # --check is not taken for --checkpoint


def test_help_is_plain_words():
    for name, parser in _parsers().items():
        text = parser.format_help()
        assert "`" not in text and ":func:" not in text and ":mod:" not in text, f"{name} --help:\n{text}"
        assert "largest face" not in text, name  # the faces chosen are the best (sam.requests.read_faces)
    top = cli.build_parser().format_help()
    assert "Commands: inference, side-by-side," in top
    assert "the best face of each photo" in _parsers()["inference"].format_help()


def test_plain():
    text = "``inference`` with :func:`sam.faces.paste.paste_back`, `x` and :class:`~sam.video.clip.ClipResult`"
    assert cli_parser.plain(text) == "inference with sam.faces.paste.paste_back, x and sam.video.clip.ClipResult"


def test_output_size_rule():
    big, tiny = SimpleNamespace(output_size=1024), SimpleNamespace(output_size=32)
    assert batch.output_size(SimpleNamespace(resize_outputs=True), big) == 256
    assert batch.output_size(SimpleNamespace(resize_outputs=False), big) == 1024
    assert batch.output_size(SimpleNamespace(resize_outputs=True), tiny) == 32  # never above the model's


def test_latent_mask_rule():
    pipe = SimpleNamespace(n_styles=18)
    assert batch.latent_mask(SimpleNamespace(latent_mask="8-10"), pipe) == [8, 9, 10]
    with pytest.raises(SystemExit, match="^error: "):
        batch.latent_mask(SimpleNamespace(latent_mask="8-40"), pipe)


def test_every_flag_says_what_it_does():
    """``--help`` (of ``python -m sam`` and ``python -m train``) explains every flag it lists (hidden ones
    excepted): no bare ``--seed SEED`` line."""
    from train.options import build_parser as train_parser

    parsers = {**_parsers(), "python -m train": train_parser()}
    bare = [f"{name} {action.option_strings[0]}" for name, p in parsers.items() for action in p._actions
            if action.option_strings and action.help is None]
    assert not bare, f"flags without help text: {bare}"


def test_train_help_says_each_default_once():
    """``python -m train --help``: a flag whose help already names its default is not given a second one."""
    from train.options import build_parser as train_parser

    text = train_parser().format_help()
    flat = " ".join(text.split())
    doubled = [line for line in flat.split(" --") if line.count("(default") > 1]
    assert not doubled, f"defaults said twice: {doubled}"
    assert "(default: 0.0)" in flat  # the loss weights still show theirs
    assert "--id_lambda 0.1 --lpips_lambda 0.1" in flat  # and where the published ones are


def test_train_refuses_a_run_with_every_loss_weight_zero(tmp_path, capsys):
    from train.options import PUBLISHED_LOSSES, parse_args

    base = ["--exp_dir", str(tmp_path), "--train_dir", str(tmp_path), "--target_age", "uniform_random"]
    with pytest.raises(SystemExit):
        parse_args(base)
    err = capsys.readouterr().err
    assert "every loss weight is 0" in err and PUBLISHED_LOSSES in err
    assert parse_args([*base, "--l2_lambda", "1"]).l2_lambda == 1.0


def test_video_help_lists_only_flags_video_reads():
    """The folder-of-photos flags (``--test_batch_size``, ``--test_workers``) are not on ``video``, which reads one
    clip; the photo commands still take them."""
    parsers = _parsers()
    assert "--test_batch_size" not in parsers["video"].format_help()
    assert "--test_workers" not in parsers["video"].format_help()
    for name in ("inference", "lifespan", "evaluate"):
        assert "--test_batch_size" in parsers[name].format_help(), name


def test_synthetic_checkpoint_help_explains_its_flags(capsys):
    from sam.network import synthetic

    with pytest.raises(SystemExit):
        synthetic.main(["--help"])
    text = capsys.readouterr().out
    assert "--seed" in text and "the seed of the values" in text and "the .pt file to write" in text
    assert "`" not in text and ":func:" not in text


def test_app_help_is_plain_and_light():
    """``python app.py --help`` in plain words, answered without importing torch or Gradio (so it comes at once)."""
    import subprocess
    import sys
    from pathlib import Path

    from web.command import build_parser as app_parser

    text = app_parser().format_help()
    assert "`" not in text and ":func:" not in text and "--checkpoint" in text
    root = Path(__file__).resolve().parents[1]
    probe = ("import runpy, sys\nsys.argv = ['app.py', '--help']\n"
             "try:\n    runpy.run_path('app.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('HEAVY', sorted(m for m in ('torch', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120).stdout
    assert "HEAVY []" in out, out[-500:]
