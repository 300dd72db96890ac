"""The real consumers of the exports (TRL, transformers, tokenizers, harbor), test-only.

``.ci/trainer-setup.sh`` installs them in CI. Without them a test skips with a reason; with
``CI=true`` it fails instead, so CI cannot go green without running them.

The tokenizer is trained here, with the ``tokenizers`` package, on a few KB of text (byte-level
BPE: every string encodes, nothing is unknown), and carries the special tokens of the chat
templates TRL ships, so that they stay one token each. No download, no hub.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
]
# Not special (they are text a model writes), but one token each as in the real vocabularies.
ADDED_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

CORPUS = """\
You are a helpful assistant that can interact with a computer.
Please solve this issue: Fix add() in calc.py. The function returns a - b instead of a + b.
THOUGHT: look at the code first, then fix the bug and run the tests.
```bash
cat calc.py
sed -i 's/a - b/a + b/' calc.py
python -m pytest -q tests.py
echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT
```
<returncode>0</returncode>
<output>
def add(a, b):
    return a - b
</output>
{"name": "bash", "arguments": {"command": "ls -la"}}
{"type": "function", "function": {"name": "bash", "description": "Execute a bash command",
 "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}
# Tools
You may call one or more functions to assist with the user query.
Cutting Knowledge Date: December 2023. Today Date: 26 Jul 2024. Environment: ipython
diff --git a/calc.py b/calc.py
"""


def need(module: str) -> ModuleType:
    """Import ``module``, or skip with a reason (fail under CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed ({exc}); bash .ci/trainer-setup.sh installs it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def chat_template(name: str) -> str:
    """One of the chat templates TRL ships (``trl/chat_templates/<name>.jinja``)."""
    trl = need("trl")
    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


def local_tokenizer(folder: Path) -> Any:
    """A byte-level BPE tokenizer trained here, as a transformers fast tokenizer."""
    tokenizers = need("tokenizers")
    transformers = need("transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.add_tokens(ADDED_TOKENS)
    fast.save_pretrained(folder)  # and load it back as a user would
    return transformers.AutoTokenizer.from_pretrained(folder)
