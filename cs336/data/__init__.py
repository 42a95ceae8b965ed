"""Where corpora are, how to fetch them, and a held-out split of a sample."""

from cs336.data.registry import CORPORA, corpus_path, data_dir, read_head, sample_path, tiktoken_gpt2
from cs336.data.split import HOLDOUT_EVERY, DocumentSplit, split_documents

__all__ = ["CORPORA", "HOLDOUT_EVERY", "DocumentSplit", "corpus_path", "data_dir", "read_head", "sample_path",
           "split_documents", "tiktoken_gpt2"]
