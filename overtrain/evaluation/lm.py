"""The lm-eval LM that every evaluation scores through: lm-eval's HFLM with tokenisations
cached per job (overtrain.evaluation.evaluate.Evaluation builds one per job)."""

from __future__ import annotations


def caching_lm_class():
    """HFLM whose tokenisations are computed once per job: lm-eval encodes every request's
    strings one by one (and decodes the BOS token on each call); multiple-choice contexts recur
    for every choice and prompt format, and every variant a job scores (perturbations, points of
    an interpolation path) reads the same documents. Uncached strings of a batch of requests are
    encoded in one tokenizer call. The token ids are exactly lm-eval's, so are the numbers."""
    from lm_eval.models.huggingface import HFLM, _add_special_kwargs, has_bos_prefix

    class CachingHFLM(HFLM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._encoded: dict = {}
            self._bos_text = self.tokenizer.decode(self.prefix_token_id)

        def _kwargs(self, string: str, add_special_tokens) -> dict:
            kwargs = _add_special_kwargs(add_special_tokens, self.add_bos_token)
            if add_special_tokens is None and has_bos_prefix(string, self._bos_text):
                kwargs["add_special_tokens"] = False
            return kwargs

        def _prefill(self, strings) -> None:
            """Encode the strings not seen yet, grouped by their special-token setting, in batches."""
            todo: dict = {}
            for string in dict.fromkeys(strings):
                if (string, None) not in self._encoded:
                    kwargs = self._kwargs(string, None)
                    todo.setdefault(tuple(sorted(kwargs.items())), []).append(string)
            for kwargs, group in todo.items():
                encoded = self._encode(group, kwargs)
                self._encoded.update({(string, None): enc for string, enc in zip(group, encoded)})

        def _encode(self, group: list[str], kwargs: tuple) -> list[list[int]]:
            """The tokenizer's input_ids of `group`. A fast tokenizer's Rust backend directly when only
            special tokens are set: transformers' per-string conversion of its output costs ~70 µs a
            string, more than the encoding (the ids are the same: __call__ runs this backend)."""
            settings = dict(kwargs)
            backend = getattr(self.tokenizer, "_tokenizer", None) if getattr(self.tokenizer, "is_fast", False) else None
            if backend is None or set(settings) - {"add_special_tokens"}:
                return self.tokenizer(group, **settings)["input_ids"]
            special = settings.get("add_special_tokens", True)
            return [e.ids for e in backend.encode_batch(group, add_special_tokens=special)]

        def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
            key = (string, add_special_tokens)
            if key not in self._encoded:
                self._encoded[key] = self.tokenizer.encode(string, **self._kwargs(string, add_special_tokens))
            encoding = list(self._encoded[key])
            return encoding[-left_truncate_len:] if left_truncate_len else encoding

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            strings = []
            for context, continuation in (r.args for r in requests):
                if context:  # as _encode_pair splits them: trailing spaces move to the continuation
                    n = len(context) - len(context.rstrip())
                    head, tail = (context[:-n], context[-n:] + continuation) if n else (context, continuation)
                    strings += [head + tail, head]
            self._prefill(strings)
            return super().loglikelihood(requests, disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            self._prefill([r.args[0] for r in requests])
            return super().loglikelihood_rolling(requests, disable_tqdm)

    return CachingHFLM
