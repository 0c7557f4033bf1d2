"""Model folders are trusted only as safetensors: a pickle is never run, a cut-short file is named, and `spanqa
fetch` converts pickled weights with torch's weights-only unpickler."""

import shutil
from pathlib import Path

import pytest
import torch

from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.reader import Reader


class Plant:
    """A pickle that writes a file when unpickled."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return Path.write_text, (Path(self.target), "code ran")


def pickled_copy(tiny_model, dest: Path, state) -> Path:
    """`tiny_model` with its safetensors weights replaced by `torch.save(state)` as pytorch_model.bin."""
    shutil.copytree(tiny_model, dest)
    (dest / "model.safetensors").unlink()
    torch.save(state, dest / "pytorch_model.bin")
    return dest


def test_a_folder_with_only_a_pickle_is_refused_with_the_conversion_command_and_never_run(tiny_model, tmp_path):
    marker = tmp_path / "marker.txt"
    folder = pickled_copy(tiny_model, tmp_path / "hostile", {"bert.embeddings.word_embeddings.weight": Plant(str(marker))})
    with pytest.raises(SpanqaError) as err:
        Reader.load(folder)
    assert "pickled weights only (pytorch_model.bin)" in str(err.value)
    assert f"spanqa fetch --model converted={folder} --output BUNDLE" in str(err.value)
    assert main(["fetch", "--model", f"converted={folder}", "--output", str(tmp_path / "bundle")]) == 2  # refused
    assert not marker.exists()


def test_fetch_converts_plain_pickled_weights_to_safetensors_that_answer_the_same(tiny_model, tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(Path(tiny_model) / "model.safetensors"))
    folder = pickled_copy(tiny_model, tmp_path / "pickled", state)
    assert main(["fetch", "--model", f"converted={folder}", "--output", str(tmp_path / "bundle")]) == 0
    converted = tmp_path / "bundle" / "models" / "converted"
    assert (converted / "model.safetensors").is_file() and not (converted / "pytorch_model.bin").exists()
    question, context = "Who wrote it?", "The book was written by Ada in 1843."
    original = Reader.load(tiny_model, precision="fp32", allow_untrained_head=True).answer(question, context)[0]
    again = Reader.load(converted, precision="fp32", allow_untrained_head=True).answer(question, context)[0]
    assert (again.text, again.score) == (original.text, original.score)


def test_a_cut_short_model_file_is_named_not_a_library_traceback(tiny_model, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(tiny_model, folder)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size - 1000])
    with pytest.raises(SpanqaError, match=rf"model.safetensors: cut short: {size - 1000:,} bytes of the {size:,}"):
        Reader.load(folder)
    weights.write_bytes(b"\x05")
    with pytest.raises(SpanqaError, match="not a safetensors file"):
        Reader.load(folder)
