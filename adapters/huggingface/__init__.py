"""The shield in Hugging Face transformers: ``mask`` as a logits processor, ``backtrack`` and
``reset`` as a decoding loop that rewinds the model's own KV cache.

Import it explicitly (``from adapters import huggingface``); it needs torch and transformers
(the ``transformers`` extra), which ``shield`` and ``specs`` never import.

* :func:`judge_for` binds a compiled :class:`shield.Shield` to a transformers tokenizer.
* :class:`ShieldLogitsProcessor`: strategy ``mask`` inside ``model.generate(logits_processor=[...])``
  (greedy, sampling, beams, ``num_return_sequences``, left padding).
* :func:`generate`: every strategy (``backtrack``, ``reset``, ``mask``, ``none``) with any
  transformers causal LM, decided by the reference machine that the JAX decoder also follows.
* :func:`shielded_decoding`: the same loop as ``model.generate(..., custom_generate=...)``.
* :class:`CommittedTextStreamer`: streams only text that can no longer be rolled back.

Example::

    import shield, specs
    from adapters import huggingface as hf

    judge = hf.judge_for(shield.compile(specs.load_library("pii")), tokenizer)
    ids = tokenizer(["Write a note."], return_tensors="pt").input_ids
    result = hf.generate(model, ids, judge=judge, strategy="backtrack", max_new_tokens=32)[0]
"""

from adapters.huggingface.binding import eos_ids_of, judge_for, refusal_encoder
from adapters.huggingface.cache import CachedPrefix, new_cache, require_croppable
from adapters.huggingface.custom import ShieldedGenerateOutput, sampling_of, shielded_decoding
from adapters.huggingface.loop import drive, generate, prompt_rows
from adapters.huggingface.mask import MASK_CACHE_STATES, ShieldLogitsProcessor
from adapters.huggingface.streaming import CommittedTextStreamer, text_sink

__all__ = [
    "MASK_CACHE_STATES",
    "CachedPrefix",
    "CommittedTextStreamer",
    "ShieldLogitsProcessor",
    "ShieldedGenerateOutput",
    "drive",
    "eos_ids_of",
    "generate",
    "judge_for",
    "new_cache",
    "prompt_rows",
    "refusal_encoder",
    "require_croppable",
    "sampling_of",
    "shielded_decoding",
    "text_sink",
]
