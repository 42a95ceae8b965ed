"""Everything between a batch of token ids and a parameter update."""

from cs336.training.checkpoint import load_checkpoint, save_checkpoint
from cs336.training.data import get_batch
from cs336.training.loss import cross_entropy
from cs336.training.muon import Muon
from cs336.training.optim import SGD, AdamW, get_lr_cosine_schedule, gradient_clipping
