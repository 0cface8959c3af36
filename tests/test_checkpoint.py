"""Checkpoint layout, save/load round trip, and clear errors for unusable files."""

import json

import pytest
import torch

from sam.model import SAM, CheckpointError, SAMConfig

from .conftest import TINY, randomize_


def test_default_model_has_exactly_the_published_layout(reference_dir):
    manifest = json.loads((reference_dir / "sam_ffhq_aging.manifest.json").read_text())
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
    loaded = SAM.from_checkpoint(path, device="cpu")
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
    assert SAM.from_checkpoint(path, device="cpu").opts["device"] == "cpu"


def test_latent_avg_of_one_row_is_repeated(tiny_model, tmp_path):
    ckpt = tiny_model.checkpoint_dict()
    ckpt["latent_avg"] = ckpt["latent_avg"][:1]
    torch.save(ckpt, tmp_path / "one.pt")
    loaded = SAM.from_checkpoint(tmp_path / "one.pt")
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
        SAM.from_checkpoint(path)
    msg = str(err.value)
    assert "1 missing: decoder.conv1.noise.weight" in msg
    assert "1 unexpected: decoder.extra.weight" in msg
    assert "encoder.latlayer1.bias (file [3], model [64])" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside it


def test_many_missing_keys_are_summarised(tiny_model, tmp_path):
    path = _variant(tiny_model, tmp_path, lambda c: [c["state_dict"].pop(k) for k in list(c["state_dict"])[:40]])
    with pytest.raises(CheckpointError, match=r"40 missing: .*\(28 more\)"):
        SAM.from_checkpoint(path)


def test_missing_latent_avg(tiny_model, tmp_path):
    path = _variant(tiny_model, tmp_path, lambda c: c.pop("latent_avg"))
    with pytest.raises(CheckpointError, match="latent_avg"):
        SAM.from_checkpoint(path)


def test_truncated_file(tiny_model, tmp_path):
    path = _save(tiny_model, tmp_path / "full.pt")
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*truncated"):
        SAM.from_checkpoint(cut)


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
        SAM.from_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_code_in_the_pickle_is_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        SAM.from_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SAM.from_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="folder"):
        SAM.from_checkpoint(tmp_path)


def test_legacy_non_zip_format_loads_without_mmap(tiny_model, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(tiny_model.checkpoint_dict(), path, _use_new_zipfile_serialization=False)
    loaded = SAM.from_checkpoint(path)
    torch.testing.assert_close(loaded.latent_avg, tiny_model.latent_avg)


def test_half_precision_checkpoint_is_upcast(tmp_path):
    model = randomize_(SAM(TINY))
    ckpt = model.checkpoint_dict()
    ckpt["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "half.pt")
    loaded = SAM.from_checkpoint(tmp_path / "half.pt")
    assert loaded.decoder.conv1.conv.weight.dtype == torch.float32
