"""Where corpora live and how to fetch them."""

from cs336.data.registry import CORPORA, corpus_path, data_dir, read_head, sample_path, tiktoken_gpt2

__all__ = ["CORPORA", "corpus_path", "data_dir", "read_head", "sample_path", "tiktoken_gpt2"]
