"""Where corpora live and how to fetch them."""

from cs336.data.registry import CORPORA, data_dir, corpus_path

__all__ = ["CORPORA", "data_dir", "corpus_path"]
