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
