"""Byte-level BPE: training (`bpe.py`), encoding and decoding (`tokenizer.py`, `merge.py`)."""

from cs336.tokenization.bpe import train_bpe
from cs336.tokenization.pretokenize import END_OF_TEXT
from cs336.tokenization.tokenizer import Tokenizer
