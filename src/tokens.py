"""Token ids shared by the translation data and task: the special tokens and turning ids back into text.

It sits outside src/data and src/tasks because both need it and a task does not import data modules.
"""
from __future__ import annotations

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # their ids are their positions


def decode(tok, ids) -> str:
    """Text of `ids` up to the first EOS, special ids dropped."""
    ids = [int(i) for i in ids]
    if EOS_ID in ids:
        ids = ids[:ids.index(EOS_ID)]
    return tok.decode([i for i in ids if i >= len(SPECIAL_TOKENS)], skip_special_tokens=True)
