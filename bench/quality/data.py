"""Evaluation samples from plain texts (continuation) and L-Eval JSONL (questions).

A Sample is a cached prefix (the "context", whose KV goes through the codecs) plus what
is run after it: the true continuation of a text, or questions with reference answers.
Everything is deterministic (fixed offsets), so runs are comparable.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Optional

MC_TASKS = ("quality", "coursera", "tpo")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclasses.dataclass
class Question:
    prompt_ids: list  # tokens after the cached context, ending where the answer starts
    answer_ids: list  # reference answer tokens (teacher forced)
    reference: str
    mc_letter: Optional[str] = None  # multiple choice: the correct option letter
    letter_ids: Optional[dict] = None  # letter -> token id


@dataclasses.dataclass
class Sample:
    sid: str
    task: str
    source: str  # file name, for provenance
    context_ids: list
    continuation_ids: list = dataclasses.field(default_factory=list)  # text tasks: N+1 tokens
    questions: list = dataclasses.field(default_factory=list)
    token_offset: int = 0  # first context token's index in the tokenized source window


def _chat(tok) -> bool:
    return tok.token_to_id("<|im_start|>") is not None


def read_docs(paths, joined_name=None):
    """[(name, text)] per file, or one document of all files joined (the usual
    needle-in-a-haystack filler is the essays concatenated)."""
    docs = [(os.path.basename(p), open(p, encoding="utf-8", errors="replace").read()) for p in paths]
    if joined_name:
        return [(joined_name, "\n\n".join(t for _, t in docs))]
    return docs


def text_sample(tok, name, text, index, context_tokens, cont_tokens, task):
    """Window number `index` of a document: context_tokens + cont_tokens + 1 tokens, or None."""
    need = context_tokens + cont_tokens + 1
    # Skip front matter; later windows start further in (about need*5 characters apart).
    start = min(len(text) // 10 + index * need * 5, max(0, len(text) - need * 6))
    ids = tok.encode(text[start:start + need * 8]).ids
    if len(ids) < need:
        return None
    return Sample(sid=f"{task}:{name}@{start}:{context_tokens}", task=task, source=name,
                  context_ids=ids[:context_tokens], continuation_ids=ids[context_tokens:need],
                  token_offset=start)


def _letter(ref: str) -> Optional[str]:
    m = re.search(r"\b([A-D])\b", ref.strip()[:8]) or re.match(r"\(?([A-D])\)?", ref.strip())
    return m.group(1) if m else None


def leval_samples(tok, path, n_docs, context_tokens, questions_per_doc, answer_tokens):
    task = os.path.splitext(os.path.basename(path))[0]
    mc = task in MC_TASKS
    chat = _chat(tok)
    out = []
    with open(path) as f:
        docs = [json.loads(line) for line in f if line.strip()]
    letter_ids = {}
    for L in "ABCD":
        ids = tok.encode(L).ids
        if len(ids) == 1:
            letter_ids[L] = ids[0]
    for d in docs[:n_docs]:
        head = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n" if chat else "")
        head_ids = tok.encode(head + "Read the document and answer the question.\n\nDocument:\n").ids
        doc_ids = tok.encode(d["input"]).ids
        ctx = (head_ids + doc_ids)[:context_tokens]
        if len(ctx) < context_tokens // 2:
            continue
        qs = []
        for inst, ref in list(zip(d["instructions"], d["outputs"]))[:questions_per_doc]:
            letter = _letter(ref) if mc else None
            if mc and (letter is None or len(letter_ids) < 4):
                continue
            ask = "\n\nAnswer with the letter of the correct option." if mc else "\n\nAnswer briefly."
            tail = (f"\n...\n\nQuestion: {inst}{ask}" + ("<|im_end|>\n<|im_start|>assistant\n" if chat else "\nAnswer:"))
            prompt = tok.encode(tail).ids + (tok.encode("Answer: ").ids if mc else [])
            ans = [letter_ids[letter]] if mc else tok.encode(ref).ids[:answer_tokens]
            if not ans:
                continue
            qs.append(Question(prompt_ids=prompt, answer_ids=ans, reference=ref, mc_letter=letter,
                               letter_ids=letter_ids if mc else None))
        if qs:
            out.append(Sample(sid=f"{task}:{len(out)}", task=task, source=os.path.basename(path),
                              context_ids=ctx, questions=qs))
    return out


def default_text_paths(data_dir):
    return (sorted(glob.glob(os.path.join(data_dir, "texts", "*.txt"))),
            sorted(glob.glob(os.path.join(data_dir, "pg", "*.txt"))))


def find_data_dir(explicit: str = "", repo: str = "") -> str:
    """The evaluation data folder (texts/, pg/, leval/): ``explicit``, else
    $ADAPTCACHE_DATA_DIR, else <repo>/../shared/data, else a copy carried under
    <repo>/.devcarry/data[/shared]. SystemExit when none has any of the three."""
    repo = repo or os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    cands = [explicit] if explicit else [os.environ.get("ADAPTCACHE_DATA_DIR", ""),
                                         os.path.join(repo, "..", "shared", "data"),
                                         os.path.join(repo, ".devcarry", "data", "shared"),
                                         os.path.join(repo, ".devcarry", "data")]
    for c in cands:
        if c and any(os.path.isdir(os.path.join(c, s)) for s in ("texts", "pg", "leval")):
            return os.path.abspath(c)
    raise SystemExit(f"no data folder with texts/, pg/ or leval/ among {[c for c in cands if c]} "
                     "(--data-dir or $ADAPTCACHE_DATA_DIR)")


def round_robin_contexts(tok, data_dir, n, ctx_tokens, cont_tokens):
    """n text samples, round robin over books (texts/), essays (pg/, joined) and L-Eval
    documents (their `input` text, document j of every task file before j+1): windows of
    ctx_tokens + cont_tokens + 1 tokens at fixed offsets (text_sample). Fewer when the data
    runs out (a warning on stderr)."""
    import sys  # noqa: PLC0415

    groups = []
    texts = sorted(glob.glob(os.path.join(data_dir, "texts", "*.txt")))
    pg = sorted(glob.glob(os.path.join(data_dir, "pg", "*.txt")))
    if texts:
        docs = read_docs(texts)
        groups.append(("books", [(name, text, i) for i in range(64) for name, text in docs]))
    if pg:
        (name, text), = read_docs(pg, "pg_essays")
        groups.append(("essays", [(name, text, i) for i in range(256)]))
    per_file = []
    for path in sorted(glob.glob(os.path.join(data_dir, "leval", "*.jsonl"))):
        with open(path) as f:
            docs = [json.loads(line) for line in f if line.strip()]
        base = os.path.splitext(os.path.basename(path))[0]
        per_file.append([(f"{base}#{j}", d.get("input", ""), 0) for j, d in enumerate(docs)])
    if per_file:
        groups.append(("leval", [fl[j] for j in range(max(map(len, per_file))) for fl in per_file if j < len(fl)]))
    if not groups:
        raise SystemExit(f"{data_dir}: no texts/*.txt, pg/*.txt or leval/*.jsonl")
    out, pos = [], [0] * len(groups)
    while len(out) < n and any(p < len(g[1]) for p, g in zip(pos, groups)):
        for gi, (task, items) in enumerate(groups):
            while len(out) < n and pos[gi] < len(items):
                name, text, idx = items[pos[gi]]
                pos[gi] += 1
                s = text_sample(tok, name, text, idx, ctx_tokens, cont_tokens, task)
                if s is not None:
                    out.append(s)
                    break
    if len(out) < n:
        print(f"warning: only {len(out)} contexts of {ctx_tokens} tokens found (asked {n})", file=sys.stderr)
    return out
