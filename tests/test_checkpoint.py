"""Checkpoint layout, save/load round trip, clear errors for unusable files, the opts checks, and the published-layout
check of ``python -m sam weights --check``."""

import subprocess
import sys

import pytest
import torch

from sam.cli import main as cli
from sam.network import checkpoint
from sam.network.checkpoint import CheckpointError, load_model
from sam.network.model import SAM, SAMConfig
from sam.pipeline import AgingPipeline

from .conftest import ROOT, TINY, published_like, randomize_


def test_default_model_has_exactly_the_published_layout():
    manifest = checkpoint.published_layout()
    with torch.device("meta"):
        net = SAM(SAMConfig.from_opts(manifest["opts"]))
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    theirs = {k: v["shape"] for k, v in manifest["state_dict"].items()}
    assert list(ours) == list(theirs)  # same keys, same order
    assert ours == theirs
    assert list(net.latent_avg.shape) == manifest["latent_avg"]["shape"]
    for part, count in manifest["param_counts"].items():
        got = sum(t.numel() for n, t in net.state_dict().items() if n.startswith(part + "."))
        assert got == count, part


def _save(model, path):
    model.save(path)
    return path


def test_round_trip(tiny_model, tmp_path):
    path = _save(tiny_model, tmp_path / "tiny.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "latent_avg", "opts"}
    loaded = load_model(path, device="cpu")
    assert loaded.config == TINY
    assert loaded.opts["device"] == "cpu"
    assert not loaded.training
    x4 = torch.rand(1, 4, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x4, randomize_noise=False), tiny_model(x4, randomize_noise=False))
    torch.testing.assert_close(loaded.latent_avg, tiny_model.latent_avg)
    assert not any(p.requires_grad for p in loaded.pretrained_encoder.parameters())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]  # no temp files left


def test_device_opt_is_taken_from_the_argument(tiny_model, tmp_path):
    tiny_model.opts["device"] = "cuda:0"  # as in the published file
    path = _save(tiny_model, tmp_path / "tiny.pt")
    assert load_model(path, device="cpu").opts["device"] == "cpu"


def test_latent_avg_of_one_row_is_repeated(tiny_model, tmp_path):
    ckpt = tiny_model.checkpoint_dict()
    ckpt["latent_avg"] = ckpt["latent_avg"][:1]
    torch.save(ckpt, tmp_path / "one.pt")
    loaded = load_model(tmp_path / "one.pt")
    assert torch.equal(loaded.latent_avg, tiny_model.latent_avg[:1].expand(TINY.n_styles, -1))


def _variant(tiny_model, tmp_path, edit):
    ckpt = tiny_model.checkpoint_dict()
    edit(ckpt)
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    return path


def test_missing_unexpected_and_misshaped_tensors_are_named(tiny_model, tmp_path):
    def edit(ckpt):
        sd = ckpt["state_dict"]
        del sd["decoder.conv1.noise.weight"]
        sd["decoder.extra.weight"] = torch.zeros(2)
        sd["encoder.latlayer1.bias"] = torch.zeros(3)

    path = _variant(tiny_model, tmp_path, edit)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert "1 missing: decoder.conv1.noise.weight" in msg
    assert "1 unexpected: decoder.extra.weight" in msg
    assert "encoder.latlayer1.bias (file [3], model [64])" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside it


def test_many_missing_keys_are_summarised(tiny_model, tmp_path):
    path = _variant(tiny_model, tmp_path, lambda c: [c["state_dict"].pop(k) for k in list(c["state_dict"])[:40]])
    with pytest.raises(CheckpointError, match=r"40 missing: .*\(28 more\)"):
        load_model(path)


def test_missing_latent_avg(tiny_model, tmp_path):
    path = _variant(tiny_model, tmp_path, lambda c: c.pop("latent_avg"))
    with pytest.raises(CheckpointError, match="latent_avg"):
        load_model(path)


def test_truncated_file(tiny_model, tmp_path):
    path = _save(tiny_model, tmp_path / "full.pt")
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*truncated"):
        load_model(cut)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"this is not a checkpoint\n", "cannot read checkpoint"),
        ({"state_dict": {}}, "does not match the SAM layout"),
        ([1, 2, 3], "not a SAM checkpoint"),
    ],
)
def test_non_checkpoint_files(tmp_path, content, match):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_code_in_the_pickle_is_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        load_model(path)
    assert "code ran" not in capsys.readouterr().out


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_model(tmp_path)


def test_legacy_non_zip_format_loads_without_mmap(tiny_model, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(tiny_model.checkpoint_dict(), path, _use_new_zipfile_serialization=False)
    loaded = load_model(path)
    torch.testing.assert_close(loaded.latent_avg, tiny_model.latent_avg)


def test_half_precision_checkpoint_is_upcast(tmp_path):
    model = randomize_(SAM(TINY))
    ckpt = model.checkpoint_dict()
    ckpt["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "half.pt")
    loaded = load_model(tmp_path / "half.pt")
    assert loaded.decoder.conv1.conv.weight.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- opts checks


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda o: o.update(output_size="abc"), "'output_size' must be an integer, got 'abc'"),
        (lambda o: o.update(output_size=0), "'output_size' must be a power of two from 8 to 2048, got 0"),
        (lambda o: o.update(output_size=2**20), "'output_size' must be a power of two from 8 to 2048, got 1048576"),
        (lambda o: o.update(output_size=48), "'output_size' must be a power of two"),
        (lambda o: o.update(output_size=True), "'output_size' must be an integer"),
        (lambda o: o.update(input_nc=3), "'input_nc' must be 4"),
        (lambda o: o.update(start_from_encoded_w_plus="yes"), "'start_from_encoded_w_plus' must be true or false"),
        (lambda o: o["model_config"].update(style_dim=-1), "'model_config.style_dim' must be an integer from 1"),
        (lambda o: o["model_config"].update(output_size="x"), "'model_config.output_size' must be an integer"),
        (lambda o: o["model_config"]["encoder"].update(units=[1, 2]), "'model_config.encoder.units' must be 4"),
        (lambda o: o["model_config"]["encoder"].update(input_size=8), "'model_config.encoder.input_size'"),
        (lambda o: o.update(model_config=[1, 2]), "'model_config' must be a mapping"),
    ],
)
def test_bad_opts_are_named(tiny_model, tmp_path, edit, field):
    ckpt = tiny_model.checkpoint_dict()
    edit(ckpt["opts"])
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="opts field " + field.replace("(", r"\(")):
        load_model(path)
    with pytest.raises(CheckpointError, match="opts field"):
        AgingPipeline.from_pretrained(path, download=False, device="cpu")


def test_opts_that_are_not_a_dict(tiny_model, tmp_path):
    ckpt = tiny_model.checkpoint_dict()
    ckpt["opts"] = [1, 2, 3]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="'opts' must be a dict"):
        load_model(tmp_path / "bad.pt")


def test_html_page_saved_as_checkpoint(tmp_path):
    path = tmp_path / "sam_ffhq_aging.pt"
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>")
    with pytest.raises(CheckpointError, match="is a web page \\(HTML\\), not a checkpoint"):
        load_model(path)


# ----------------------------------------------------------------------------- the published layout (weights --check)


def _write(ckpt, path):
    torch.save(ckpt, path)
    return path


def _nan(ckpt):
    ckpt["state_dict"]["decoder.convs.5.conv.weight"] = torch.full((), float("nan")).expand(
        ckpt["state_dict"]["decoder.convs.5.conv.weight"].shape)


def _wrong_shape(ckpt):
    ckpt["state_dict"]["encoder.styles.3.linear.weight"] = torch.zeros(512, 256)


def _opt(**kw):
    return lambda ckpt: ckpt["opts"].update(kw)


def _kernel(ckpt):
    ckpt["state_dict"]["decoder.convs.0.conv.blur.kernel"] = torch.ones(4, 4)


@pytest.mark.parametrize(
    "edit,reason",
    [
        (_wrong_shape, "encoder.styles.3.linear.weight \\(file \\[512, 256\\], model \\[512, 512\\]\\)"),
        (_opt(output_size="abc"), "opts field 'output_size' must be an integer, got 'abc'"),
        (_opt(output_size=0), "opts field 'output_size' must be a power of two from 8 to 2048, got 0"),
        (_opt(output_size=2**20), "opts field 'output_size' must be a power of two from 8 to 2048, got 1048576"),
        (_opt(output_size=512), "opts field 'output_size' is 512, the published model has 1024"),
        (_nan, "NaN or infinite weights in 1 tensors: decoder.convs.5.conv.weight"),
        (_kernel, "fixed FIR kernel decoder.convs.0.conv.blur.kernel"),
        (lambda c: c.update(latent_avg=torch.zeros(512)), "'latent_avg' is \\[512\\]"),
    ],
)
def test_weights_check_refuses(tmp_path, edit, reason):
    ckpt = published_like()
    edit(ckpt)
    path = _write(ckpt, tmp_path / "sam_ffhq_aging.pt")
    with pytest.raises(SystemExit) as info:
        cli(["weights", "--check", str(path)])
    msg = str(info.value.code)
    assert msg.startswith("error: ") and "\n" not in msg
    assert __import__("re").search(reason, msg), msg


def test_weights_check_refuses_tiny_html_and_missing(tmp_path, tiny_checkpoint):
    with pytest.raises(SystemExit, match="is not the published SAM model: opts field 'output_size' is 32"):
        cli(["weights", "--check", str(tiny_checkpoint)])
    html = tmp_path / "page.pt"
    html.write_bytes(b"<html><body>Too many users have viewed or downloaded this file recently</body></html>")
    with pytest.raises(SystemExit, match="is a web page"):
        cli(["weights", "--check", str(html)])
    with pytest.raises(SystemExit, match="SAM checkpoint not found at .*nope.pt. Run `python -m sam weights`"):
        cli(["weights", "--check", str(tmp_path / "nope.pt")])


def test_weights_check_accepts_the_published_layout(tmp_path, capsys):
    path = _write(published_like(), tmp_path / "sam_ffhq_aging.pt")
    assert cli(["weights", "--check", str(path)]) == 0
    assert "the published SAM layout, finite weights, loads" in capsys.readouterr().out
    assert cli(["weights", "--checkpoint_path", str(path)]) == 0  # found, so nothing to download


def test_weights_check_exit_code(tmp_path, tiny_checkpoint):
    """The real command line: exit code 1 and one line on stderr."""
    run = subprocess.run([sys.executable, "-m", "sam", "weights", "--check", str(tiny_checkpoint)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "not the published SAM model" in run.stderr


def test_own_size_checkpoints_still_load(tiny_checkpoint):
    """Loading checks a file against the model its (validated) opts describe: a tiny or retrained model loads,
    only ``weights --check`` and downloads insist on the published layout."""
    pipe = AgingPipeline.from_pretrained(tiny_checkpoint, download=False, device="cpu")
    assert pipe.output_size == TINY.output_size and pipe.checkpoint_path == tiny_checkpoint
