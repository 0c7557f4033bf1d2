"""A trained reader's probabilities, calibrated: at the end of training and by `spanqa calibrate`."""

import json

import numpy as np
import pytest

from conftest import V1, train_args
from spanqa.answering.calibration import expected_calibration_error, question_labels
from spanqa.artifacts import ReaderInfo
from spanqa.cli import main
from spanqa.data import load_examples
from spanqa.reader import Reader


@pytest.fixture(scope="module")
def fitted_reader(tmp_path_factory, tiny_model):
    """The tiny model trained long enough on the v1.1 fixture to answer part of it right."""
    out = tmp_path_factory.mktemp("calib") / "reader"
    assert main(train_args(tiny_model, out, "--eval-data", V1, "--max-steps", "120", "--learning-rate", "3e-3",
                           "--precision", "fp32")) == 0
    return out


@pytest.mark.slow
def test_training_stores_a_calibration_that_lowers_ece_on_held_out_questions(fitted_reader):
    cal = ReaderInfo.load(fitted_reader).calibration
    assert cal is not None and cal.questions == 300 and cal.data == "squad-v1.1-dev-fixture"
    assert cal.ece_after < cal.ece_before
    # this reader is right on few questions, so no probability it gives makes answering pay: it abstains
    assert cal.abstain_below == 1.0 and cal.slope > 0


@pytest.mark.slow
def test_calibrated_probabilities_are_what_the_reader_answers_with(fitted_reader):
    reader = Reader.load(fitted_reader, precision="fp32")
    examples = load_examples(V1).examples
    raw, margin, right = question_labels(reader.predict(examples), examples, False, 0.0)
    answered = np.array([reader.answer(e.question, e.context)[0].probability for e in examples])
    assert np.allclose(answered, reader.info.calibration.apply(raw, margin))
    held = slice(1, None, 2)
    assert expected_calibration_error(answered[held], right[held]) < expected_calibration_error(raw[held], right[held])


@pytest.mark.slow
def test_the_calibrate_command_writes_a_copy_and_refuses_to_touch_what_is_not_a_reader_folder(
        fitted_reader, tmp_path, capsys):
    assert main(["calibrate", "--model", str(fitted_reader), V1, "--output", str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert "expected calibration error" in out and "->" in out
    copy = json.loads((tmp_path / "copy" / "spanqa_reader.json").read_text())
    assert copy["calibration"]["questions"] == 300 and (tmp_path / "copy" / "model.safetensors").exists()
    assert main(["calibrate", "--model", "minilm-l6", V1, "--allow-untrained-head"]) == 2
    assert "pass --output" in capsys.readouterr().err
