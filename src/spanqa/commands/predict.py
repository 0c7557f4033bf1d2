"""`spanqa predict`: a reader over a corpus, streamed -> answers as they come, official files at the end.

The questions are read one at a time (`spanqa.data.stream`) and answered in chunks of `CHUNK`, in source
order. Each chunk's answers are appended to `<output stem>.answers.jsonl` and synced before the next chunk
starts, so a kill loses at most the chunk in flight, and `--resume` continues from the last whole chunk: the
chunks are the same as an uninterrupted run's, so the numbers and the files are byte for byte the same.
The official files (`{id: answer}`, no-answer probabilities, n-best lists) are written from that file at the
end. The corpus is never held: what predict keeps is one chunk, the gold answers when there are any (for the
scores) and, at the end, `{id: answer}`.

Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) process r answers chunks r, r + W, r + 2W... into its own
`.answers.r-of-W.jsonl`; process 0 waits for the others, then interleaves the shards back into source order:
the merged files equal one process's.

The answers file: a header line (`AnswersHeader`: schema version, source, model, chunk size, shard), one line
per question (`{"id", "answer", "na_prob"}`, plus `"nbest"` when asked), and a footer `{"done": N}`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator

from spanqa.data.stream import QuestionStream
from spanqa.data.types import Example
from spanqa.errors import SpanqaError
from spanqa.files import write_failed, write_json_atomic
from spanqa.evaluation import gold_question
from spanqa.metrics import score_predictions

CHUNK = 256  # questions answered, written and synced together: the most a kill can cost
ANSWERS_VERSION = 1


@dataclass(frozen=True)
class AnswersHeader:
    """The first line of an answers file: what it was made from, so `--resume` continues only the same run."""

    source: str
    model: str
    chunk: int = CHUNK
    nbest: bool = False
    shard: str = "0-of-1"
    max_samples: int = 0
    spanqa_answers: int = ANSWERS_VERSION


@dataclass(frozen=True)
class PredictSummary:
    """What a predict run did: this process's questions, those answered before it (resumed), time, windows; on
    process 0 the gold answers and how to score them (None when the data has none)."""

    questions: int
    resumed: int
    seconds: float
    windows: int
    gold: dict | None = None
    answers_file: str = ""

    @property
    def questions_per_second(self) -> float:
        return (self.questions - self.resumed) / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        """This process's place under torchrun / accelerate launch (RANK, WORLD_SIZE); 0 of 1 otherwise."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def owns(self, chunk: int) -> bool:
        return chunk % self.world == self.rank

    def __str__(self) -> str:
        return f"{self.rank}-of-{self.world}"


def answers_path(output: Path, shard: Shard = Shard()) -> Path:
    suffix = ".answers.jsonl" if shard.world == 1 else f".answers.{shard}.jsonl"
    return output.with_name(output.stem + suffix)


def predict_stream(reader, stream: QuestionStream, output: Path, *, resume: bool = False, nbest: bool = False,
                   max_samples: int = 0, progress: bool = True, shard: Shard = Shard()) -> PredictSummary:
    """Answer every question of `stream` into this shard's answers file; returns what this process did.

    Raises:
        SpanqaError: the answers file exists without `resume`, or was written by another run; a write fails.
    """
    from tqdm.auto import tqdm

    path = answers_path(output, shard)
    header = AnswersHeader(stream.source, reader.name, CHUNK, nbest, str(shard), max_samples)
    total, version = stream.count()
    if not total:
        raise SpanqaError(f"{stream.source}: no questions found.")
    total = min(total, max_samples) if max_samples else total
    done, finished = _reopen(path, header) if resume and path.exists() else (_start(path, header), False)
    mine = sum(min(CHUNK, total - k * CHUNK) for k in range(-(-total // CHUNK)) if shard.owns(k))
    bar = tqdm(desc="predict", unit="q", total=mine, initial=done, disable=not progress or shard.rank != 0,
               dynamic_ncols=True)
    windows, gold, unanswerable, has_gold, t0 = [0], [], False, False, time.perf_counter()
    skip = None if finished else done // CHUNK  # chunks of this shard already written (None: all of them)
    kept = _records(path) if done else iter(())  # to check the questions skipped are the ones answered
    with open(path, "ab", buffering=0) as fh:
        for k, chunk in enumerate(_chunks(stream, total)):
            if shard.rank == 0:
                gold += [gold_question(e) for e in chunk]
                unanswerable = unanswerable or any(e.is_impossible for e in chunk)
                has_gold = has_gold or any(e.gold_texts or e.is_impossible for e in chunk)
            if not shard.owns(k):
                continue
            if skip is None or k // shard.world < skip:
                _same_questions(chunk, kept, path)
                continue
            preds = reader.predict(chunk, progress=lambda n: windows.__setitem__(0, windows[0] + n))
            _append(fh, path, [_line(p, nbest) for p in preds])
            bar.update(len(chunk))
        if skip is not None:
            _append(fh, path, [json.dumps({"done": mine})])
    bar.close()
    seconds = time.perf_counter() - t0
    scoring = "mrqa" if stream.format == "mrqa" else (
        "squad-v2.0" if unanswerable or version.startswith("v2") else "squad-v1.1")
    return PredictSummary(mine, done, seconds, windows[0], {"scoring": scoring, "gold": gold} if has_gold else None,
                          str(path))


def finish(output: Path, shard: Shard, na_probs_out: Path | None, nbest_out: Path | None, gold: dict | None,
           allow_null: bool) -> dict | None:
    """Process 0, after every shard is done: merge the shards (several processes), write the official files
    from the answers file, and score them when there is gold. Returns the scores (None without gold)."""
    path = answers_path(output)
    if shard.world > 1:
        _merge([answers_path(output, Shard(r, shard.world)) for r in range(shard.world)], path)
    answers, probs, lists = {}, {}, {}
    for record in _records(path):
        answers[record["id"]] = record["answer"]
        probs[record["id"]] = record["na_prob"]
        if nbest_out:
            lists[record["id"]] = record.get("nbest", [])
    write_json_atomic(output, answers)
    if na_probs_out:
        write_json_atomic(na_probs_out, probs)
    if nbest_out:
        write_json_atomic(nbest_out, lists)
    if gold is None:
        return None
    return score_predictions(gold["gold"], answers, gold["scoring"], probs if allow_null else None)


def _same_questions(chunk: list[Example], kept: Iterator[dict], path: Path) -> None:
    """Resuming: the questions of a chunk answered before must be the ones in the file, in order."""
    for example in chunk:
        record = next(kept, None)
        if record is None or record["id"] != example.id:
            raise SpanqaError(f"{path}: holds an answer for {record['id'] if record else 'nothing'!r} where the data now "
                              f"has question {example.id!r}: the data changed since this run started. Remove the "
                              "file to start again.")


def _chunks(stream: QuestionStream, total: int) -> Iterator[list[Example]]:
    examples = islice(iter(stream), total)
    while chunk := list(islice(examples, CHUNK)):
        yield chunk


def _line(pred, nbest: bool) -> str:
    record = {"id": pred.id, "answer": pred.answer, "na_prob": pred.na_prob}
    if nbest:
        record["nbest"] = [s._asdict() for s in pred.spans]
    return json.dumps(record, ensure_ascii=False)


def _append(fh, path: Path, lines: list[str]) -> None:
    """Append whole lines to `fh` (unbuffered binary: nothing is left in a buffer to reach the disk later) and
    sync them: after this returns, a kill keeps them; if it fails, the file is cut back to where it was."""
    start = fh.seek(0, os.SEEK_END)
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    try:
        view = memoryview(data)
        while view:
            view = view[fh.write(view):]
        os.fsync(fh.fileno())
    except OSError as exc:
        fh.truncate(start)  # the chunk's part that got out: --resume starts after the last whole chunk
        raise write_failed(exc, path, len(data)) from None


def _start(path: Path, header: AnswersHeader) -> int:
    if path.exists():
        raise SpanqaError(f"{path}: already holds answers (a run that stopped?). Continue it with --resume, or "
                          "remove it to start again.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb", buffering=0) as fh:
        _append(fh, path, [json.dumps(dataclasses.asdict(header))])
    return 0


def _reopen(path: Path, header: AnswersHeader) -> tuple[int, bool]:
    """(questions already answered in `path` by the same run, whether it finished), after cutting the file back
    to its last whole chunk."""
    kept, offset, count, finished = 0, 0, 0, False
    with open(path, "rb") as fh:
        first = fh.readline()
        try:
            saved = AnswersHeader(**json.loads(first))
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
            raise SpanqaError(f"{path}: line 1: not a spanqa answers header; remove the file to start again.") from None
        if saved != header:
            diff = ", ".join(f"{f.name} {getattr(saved, f.name)!r} (now {getattr(header, f.name)!r})"
                             for f in dataclasses.fields(header) if getattr(saved, f.name) != getattr(header, f.name))
            raise SpanqaError(f"{path}: written by another run ({diff}); --resume continues only the same "
                              "source, model and settings. Remove the file to start again.")
        offset = kept = fh.tell()
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # the line a kill cut
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            offset += len(raw)
            if "done" in record:
                finished = True
                kept = offset
                break
            count += 1
            if count % CHUNK == 0:
                kept = offset
    if finished:
        return count, True
    with open(path, "r+b") as fh:
        fh.truncate(kept)
    return count - count % CHUNK, False


def _records(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            record = json.loads(line)
            if "done" not in record:
                yield record


def _merge(shards: list[Path], merged: Path) -> None:
    """Interleave the shards' chunks (shard r holds chunks r, r + W, ...) into one answers file, written beside
    it and renamed into place."""
    for p in shards:
        if not p.exists():
            raise SpanqaError(f"{p}: missing: a process of this run did not write its answers.")
    readers = [_records(p) for p in shards]
    with open(shards[0], encoding="utf-8") as fh:
        header = json.loads(fh.readline())
    header["shard"] = str(Shard())
    tmp = merged.with_name(f".{merged.name}.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(json.dumps(header) + "\n")
            n, moved = 0, True
            while moved:
                moved = False
                for r in readers:
                    chunk = list(islice(r, CHUNK))
                    out.write("".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in chunk))
                    n, moved = n + len(chunk), moved or bool(chunk)
            out.write(json.dumps({"done": n}) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, merged)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(exc, merged, sum(p.stat().st_size for p in shards)) from None


def barrier(shard: Shard) -> None:
    """Wait until every process of a torchrun / accelerate launch run gets here (gloo: CPU or GPU alike)."""
    if shard.world == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
