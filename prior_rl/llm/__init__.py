"""Language models and what they need: the Llama/Qwen2 decoder (:mod:`.llama`), the BERT encoder (:mod:`.bert`,
:mod:`.encoder`), tokenizers, weight loading and the model registry (:mod:`.weights`), shape bucketing
(:mod:`.padding`) and the generic result cache (:mod:`.cache`). Imports nothing from the rest of prior_rl or envs."""
