"""Reference side of bench/inference.py: transformers 4.57's question-answering pipeline.

Runs in a separate process with the interpreter of bench/.ref's virtual environment, which holds
transformers 4.57 and its dependencies (the pipeline was removed in transformers 5; see
`inference.ensure_reference`). Reads questions from a JSON file, writes answers and timings to another.
Usage: .ref/venv-transformers-4.57/bin/python _pipeline_ref.py MODEL_DIR QUESTIONS.json OUT.json BATCH_SIZES
"""

import json
import sys
import time


def main() -> None:
    model_dir, questions_path, out_path, sizes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    import torch
    import transformers
    from transformers import pipeline

    print(f"reference: transformers {transformers.__version__} from {transformers.__file__}, torch {torch.__version__}",
          file=sys.stderr, flush=True)
    transformers.logging.set_verbosity_error()
    qa = pipeline("question-answering", model=model_dir, tokenizer=model_dir, device=-1)
    items = json.load(open(questions_path))
    inputs = [{"question": q["question"], "context": q["context"]} for q in items]
    kwargs = dict(max_seq_len=384, doc_stride=128, max_answer_len=30, max_question_len=64)
    qa(inputs[:4], batch_size=4, **kwargs)  # warm-up
    runs = {}
    for bs in [int(s) for s in sizes.split(",")]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            outs = qa(inputs, batch_size=bs, **kwargs)
        seconds = time.perf_counter() - t0
        runs[bs] = {"seconds": seconds, "questions_per_second": len(inputs) / seconds,
                    "answers": [{"text": o["answer"], "start": o["start"], "end": o["end"]} for o in outs]}
        print(f"pipeline batch {bs}: {len(inputs) / seconds:.1f} q/s", file=sys.stderr, flush=True)
    json.dump({"transformers": transformers.__version__, "threads": torch.get_num_threads(), "runs": runs},
              open(out_path, "w"))


if __name__ == "__main__":
    main()
