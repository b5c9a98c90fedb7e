"""Scoring: one interface (`Scorer`: label probabilities and greedy generation), three engines.

- `kit.scoring.hf`: transformers, with or without the LoRA adapter (evaluation, validation, probes, baselines);
- `kit.scoring.llamacpp`: a GGUF in llama.cpp, the engine Ollama builds on (export parity, monitoring);
- `kit.scoring.endpoint`: any OpenAI-compatible completions server (the served-model check in 04, tenants).

`predict` turns any engine's scores into the same prediction records, and `label_tokens` is the one rule for labels
that share a first token (`kit.scoring.base`). The servers the HTTP engine talks to live here too: `kit.scoring.serve`
starts llama.cpp's server for one GGUF or kit's tenant server (`kit.scoring.tenants`, one base GGUF with a LoRA per
tenant, `python -m kit.scoring.tenants`) as a child process on 127.0.0.1.
"""

from kit.scoring.base import (  # noqa: F401
                              LabelTokens,
                              Scorer,
                              best_labels,
                              label_tokens,
                              predict,
                              rows_from_probs,
                              softmax_rows,
)
from kit.scoring.endpoint import EndpointError, EndpointScorer  # noqa: F401
from kit.scoring.hf import (  # noqa: F401
                              HFScorer,
                              common_prefix_length,
                              continuation_logprobs,
                              generate_texts,
                              label_first_tokens,
                              score_labels,
)
from kit.scoring.llamacpp import LlamaCppScorer  # noqa: F401

