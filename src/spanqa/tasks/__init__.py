"""Training tasks on the engine (`spanqa.train.engine`): each module exports its settings class and
`build(settings, run, command) -> Task`.

    reader.py    spanqa train / distill: windows, span loss or the distillation objective, a reader folder
    classify.py  spanqa classify: sentence (pair) rows, cross-entropy, accuracy
    pretrain.py  spanqa pretrain: a tokenized corpus, masked LM (+ NSP)
"""
