"""`spanqa calibrate RUN DATA`: fit the Platt scaling of an existing reader's probabilities, store it with it.

A local reader folder is updated in place (its `spanqa_reader.json`); a hub model, an alias or a folder given
with `--output` is copied to `--output` first, so nothing in the hub cache is changed.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from spanqa.answering.calibration import fit
from spanqa.artifacts import ReaderInfo
from spanqa.data import load_examples
from spanqa.errors import SpanqaError
from spanqa.models.hub import resolve_model_path


def calibrate(reader, source: str, data: str, output: str | None, max_samples: int = 0):
    """Fit on `data`'s questions, write the reader's info with the calibration; returns (Calibration, folder)."""
    folder = Path(resolve_model_path(source))
    if output is None and not (Path(source).is_dir() and ReaderInfo.exists(folder)):
        raise SpanqaError(f"{source}: not a local reader folder to update; pass --output NEW_FOLDER for a copy.")
    dataset = load_examples(data)
    examples = dataset.examples[:max_samples] if max_samples else dataset.examples
    raw = dataclasses.replace(reader, info=dataclasses.replace(reader.info, calibration=None))
    predictions = raw.predict(examples)
    calibration = fit(predictions, examples, reader.allow_null, reader.decode.null_score_diff_threshold,
                      data=Path(data).name if Path(data).exists() else data)
    if calibration is None:
        raise SpanqaError(f"{data}: too few questions to calibrate on, or the reader's answers are all right or "
                          f"all wrong ({len(examples)} questions; at least 40 with both are needed).")
    if output is not None:
        if Path(output).exists() and any(Path(output).iterdir()):
            raise SpanqaError(f"{output}: the folder is not empty; choose a new --output.")
        shutil.copytree(folder, output, dirs_exist_ok=True)
        folder = Path(output)
    info = ReaderInfo.load(folder) or dataclasses.replace(reader.info, base_model=str(source))
    dataclasses.replace(info, calibration=calibration).save(folder)
    return calibration, folder
