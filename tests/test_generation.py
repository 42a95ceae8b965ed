import json
import pytest
import torch

from cs336 import Tokenizer, TransformerLM
from cs336.cli import main
from cs336.errors import CS336Error
from cs336.generation import (
    KVCache,
    generate,
    next_token_distribution,
    sample_ids,
    window_start,
)
from cs336.runs import load_model, load_run
from cs336.tokenization import END_OF_TEXT
from cs336.training.checkpoint import read_checkpoint
from run_factory import gpt2_bpe, make_run

VOCAB, CONTEXT = 61, 16


def tiny_lm(seed=0, **kwargs):
    torch.manual_seed(seed)
    return TransformerLM(VOCAB, CONTEXT, 32, 2, 4, 64, 10000.0, **kwargs).eval()


ARCHITECTURES = [
    dict(),
    dict(fused=True),
    dict(norm="post"),
    dict(norm="none", position="nope", ffn="silu"),
    dict(tie_embeddings=True),
    dict(value_residual=True, residual_scalars=True, qk_norm=True),
]


# --- the KV cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", ARCHITECTURES)
def test_cached_forward_in_chunks_equals_one_full_forward(kwargs):
    model = tiny_lm(**kwargs)
    ids = torch.randint(0, VOCAB, (2, CONTEXT))
    full = model(ids)
    cache = KVCache(len(model.layers))
    chunks = [model(ids[:, a:b], kv_cache=cache) for a, b in [(0, 5), (5, 6), (6, 11), (11, CONTEXT)]]
    assert len(cache) == CONTEXT
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=0)


def test_cached_positions_continue_from_the_cache_length():
    # RoPE's rotation depends on the absolute position, so token 5 fed alone after a cache of 5
    # must match token 5 in the full sequence, and differ from token 5 fed at position 0.
    model = tiny_lm()
    ids = torch.randint(0, VOCAB, (1, 6))
    cache = KVCache(len(model.layers))
    model(ids[:, :5], kv_cache=cache)
    torch.testing.assert_close(model(ids[:, 5:], kv_cache=cache)[0, -1], model(ids)[0, -1], atol=1e-5, rtol=0)
    explicit = model(ids[:, 5:], token_positions=torch.tensor([5]), kv_cache=KVCache(len(model.layers)))
    assert not torch.allclose(explicit[0, -1], model(ids)[0, -1], atol=1e-3)


def test_cache_past_the_context_length_is_refused():
    model = tiny_lm()
    cache = KVCache(len(model.layers))
    model(torch.zeros(1, CONTEXT, dtype=torch.long), kv_cache=cache)
    with pytest.raises(CS336Error, match="context_length"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)


@pytest.mark.parametrize(
    "kwargs,slide", [(dict(), 1), (dict(), CONTEXT)] + [(kwargs, 5) for kwargs in ARCHITECTURES]
)
def test_cached_greedy_decoding_equals_uncached_across_window_slides(kwargs, slide):
    model = tiny_lm(**kwargs)
    prompt = [3, 1, 4, 1, 5]
    n = 2 * CONTEXT  # the window slides several times
    cached = list(sample_ids(model, prompt, n, temperature=0, use_cache=True, slide=slide))
    plain = list(sample_ids(model, prompt, n, temperature=0, use_cache=False, slide=slide))
    assert [s.token_id for s in cached] == [s.token_id for s in plain]
    for a, b in zip(cached, plain):
        torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)


def test_uncached_decoding_with_slide_1_reads_the_latest_context_length_tokens():
    # The obviously-correct loop: every step runs the model on the last CONTEXT tokens.
    model = tiny_lm()
    ids = list(range(1, 21))  # a prompt longer than the context
    expected = []
    with torch.no_grad():
        for _ in range(20):
            logits = model(torch.tensor(ids[-CONTEXT:])[None])[0, -1]
            ids.append(int(logits.argmax()))
            expected.append(ids[-1])
    got = [s.token_id for s in sample_ids(model, list(range(1, 21)), 20, temperature=0, slide=1)]
    assert got == expected


def test_sampled_decoding_is_reproducible_with_a_seed_and_equal_with_and_without_cache():
    model = tiny_lm()
    run = lambda seed, cache: [s.token_id for s in sample_ids(model, [7], 40, temperature=1.0, seed=seed, use_cache=cache)]
    assert run(0, True) == run(0, True) == run(0, False)
    assert run(0, True) != run(1, True)


def test_decoding_stops_right_after_eos():
    model = tiny_lm()
    free = [s.token_id for s in sample_ids(model, [2], 30, temperature=0.8, seed=3)]
    eos = free[7]
    stopped = [s.token_id for s in sample_ids(model, [2], 30, temperature=0.8, seed=3, eos_id=eos)]
    assert stopped == free[: free.index(eos) + 1]


def test_window_start_moves_only_when_the_window_overflows():
    assert window_start(0, 8, 8, slide=3) == 0
    assert window_start(0, 9, 8, slide=3) == 3  # 6 tokens kept: room for 2 more
    assert window_start(3, 11, 8, slide=3) == 3
    assert window_start(3, 12, 8, slide=3) == 6
    assert window_start(0, 9, 8, slide=1) == 1
    with pytest.raises(CS336Error, match="slide"):
        window_start(0, 9, 8, slide=9)


def test_decoding_does_not_leave_the_model_in_eval_mode():
    model = tiny_lm().train()
    list(sample_ids(model, [1], 2))
    assert model.training


# --- the sampling distribution ------------------------------------------------------------------


def slow_nucleus(probs: list[float], top_p: float) -> list[float]:
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += probs[i]
        if mass >= top_p:
            break
    total = sum(probs[i] for i in kept)
    return [probs[i] / total if i in kept else 0.0 for i in range(len(probs))]


@pytest.mark.parametrize("top_p", [1e-6, 0.1, 0.5, 0.9, 0.999])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p):
    torch.manual_seed(0)
    logits = torch.randn(200) * 3
    probs = torch.softmax(logits, dim=-1)
    expected = torch.tensor(slow_nucleus(probs.tolist(), top_p))
    torch.testing.assert_close(next_token_distribution(logits, 1.0, top_p), expected, atol=1e-6, rtol=1e-5)


def test_top_p_ties_keep_the_lower_id():
    dist = next_token_distribution(torch.tensor([0.0, 1.0, 1.0, 1.0]), top_p=0.5)
    assert dist.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.0])


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_scales_logits_before_softmax(temperature):
    logits = torch.randn(3, 50)
    torch.testing.assert_close(next_token_distribution(logits, temperature), torch.softmax(logits / temperature, -1))


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0], [9.0, 0.0, 0.0, 0.0]])
    assert next_token_distribution(logits, 0.0).tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]


@pytest.mark.parametrize("k", [1, 3, 50])
def test_top_k_keeps_the_k_most_likely(k):
    logits = torch.randn(50)
    values, idx = torch.topk(logits, k)
    expected = torch.zeros(50).scatter(0, idx, torch.softmax(values, -1))
    torch.testing.assert_close(next_token_distribution(logits, 1.0, top_k=k), expected)


def test_top_k_and_top_p_combine():
    dist = next_token_distribution(torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1])), top_k=3, top_p=0.5)
    assert dist.tolist() == pytest.approx([4 / 7, 3 / 7, 0, 0])


@pytest.mark.parametrize("kwargs,what", [(dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"), (dict(top_k=0), "top_k")])
def test_bad_sampling_settings_are_refused(kwargs, what):
    with pytest.raises(CS336Error, match=what):
        next_token_distribution(torch.zeros(4), **kwargs)


def test_empty_or_out_of_vocabulary_prompts_are_refused():
    model = tiny_lm()
    with pytest.raises(CS336Error, match="empty"):
        list(sample_ids(model, [], 3))
    with pytest.raises(CS336Error, match="token ids"):
        list(sample_ids(model, [VOCAB], 3))


# --- text in, text out --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tokenizer(data_dir):
    vocab, merges = gpt2_bpe(data_dir, 200)
    return Tokenizer(vocab, merges, special_tokens=[END_OF_TEXT])


def test_generate_returns_the_decoded_continuation(small_tokenizer):
    tok = small_tokenizer
    torch.manual_seed(0)
    model = TransformerLM(len(tok.vocab), 32, 32, 2, 4, 64, 10000.0)
    prompt = "Once upon a time"
    ids = [s.token_id for s in sample_ids(model, tok.encode(prompt), 20, temperature=0.9, top_p=0.8, seed=5)]
    eos = tok.encode(END_OF_TEXT)[0]
    assert generate(model, tok, prompt, 20, temperature=0.9, top_p=0.8, seed=5, stop_at_eos=False) == tok.decode(ids)
    stop = ids.index(eos) if eos in ids else len(ids)
    assert generate(model, tok, prompt, 20, temperature=0.9, top_p=0.8, seed=5) == tok.decode(ids[:stop])


# --- loading runs -------------------------------------------------------------------------------


def test_load_model_takes_the_latest_checkpoint_of_a_run(tmp_path, data_dir):
    run = make_run(tmp_path / "run", data_dir, steps=(200, 30, 1000))
    model = load_model(run)
    saved = read_checkpoint(run / "checkpoints" / "step_0001000.pt")["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert not model.training


def test_load_model_from_a_checkpoint_reads_the_run_config_beside_it(tmp_path, data_dir):
    run = make_run(tmp_path / "run", data_dir, d_model=48, tie_embeddings=True)
    model = load_model(run / "checkpoints" / "step_0000010.pt")
    assert model.d_model == 48 and model.tie_embeddings


def test_a_run_with_value_residual_and_residual_scalars_reloads_them_from_its_config(tmp_path, data_dir):
    run = make_run(tmp_path / "run", data_dir, value_residual=True, residual_scalars=True)
    model = load_model(run)
    saved = read_checkpoint(run / "checkpoints" / "step_0000200.pt")["model"]
    assert model.value_residual and model.residual_scalars and model.state_dict().keys() == saved.keys()
    assert {"layers.1.attn.value_mix", "layers.0.stream_mix", "layers.1.branch_gains"} <= saved.keys()


def test_load_run_errors_are_one_line_and_name_the_problem(tmp_path, data_dir):
    with pytest.raises(CS336Error, match="run directory not found"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CS336Error, match="no checkpoints in"):
        load_run(tmp_path / "empty")
    run = make_run(tmp_path / "run", data_dir, num_merges=100)
    other = make_run(tmp_path / "other", data_dir, num_merges=150)
    ckpt = run / "checkpoints" / "step_0000200.pt"
    with pytest.raises(CS336Error, match="tokenizer has 407 tokens but the model's vocab_size is 357"):
        load_run(checkpoint=ckpt, tokenizer=other)
    with pytest.raises(CS336Error, match="tokenizer directory"):
        load_run(checkpoint=ckpt)
    with pytest.raises(CS336Error, match="no tokenizer"):
        load_run(checkpoint=ckpt, tokenizer=tmp_path / "empty")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_steps = 1\n[model]\nvocab_size = 357\nd_modle = 8\n")
    with pytest.raises(CS336Error, match="d_modle"):
        load_run(checkpoint=ckpt, tokenizer=run, config=bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("max_steps = 1\n[model]\nvocab_size = 357\nd_model = 64\n")
    with pytest.raises(CS336Error, match="does not match the model"):
        load_run(checkpoint=ckpt, tokenizer=run, config=wrong)


def test_cli_generate_prints_prompt_and_continuation(tmp_path, data_dir, capsys, small_tokenizer):
    run = make_run(tmp_path / "run", data_dir)
    assert main(["generate", "--run", str(run), "--prompt", "The cat", "--max-new-tokens", "12", "--temperature", "0", "--no-eos-stop"]) == 0
    model, tok = load_run(run)
    expected = "The cat" + generate(model, tok, "The cat", 12, temperature=0, stop_at_eos=False)
    assert capsys.readouterr().out == expected + "\n"
    # A bare checkpoint with its tokenizer and config gives the same text.
    ckpt = run / "checkpoints" / "step_0000200.pt"
    args = ["--checkpoint", str(ckpt), "--tokenizer", str(run), "--config", str(run / "config.json")]
    assert main(["generate", *args, "--prompt", "The cat", "--max-new-tokens", "12", "--temperature", "0", "--no-eos-stop"]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_cli_generate_reports_a_missing_run_in_one_line(tmp_path, capsys):
    assert main(["generate", "--run", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run directory not found") and err.count("\n") == 1


def test_a_run_without_its_own_tokenizer_uses_the_one_beside_its_training_tokens(tmp_path, data_dir):
    """`cs336 train-bpe --out D` + `cs336 encode --out D/train.npy` + `cs336 train` leaves the
    tokenizer beside the data, not in the run: `--run` alone must still find it."""
    run = make_run(tmp_path / "run", data_dir)
    tok_dir = tmp_path / "data"
    tok_dir.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (run / name).rename(tok_dir / name)
    config = json.loads((run / "config.json").read_text())
    config["data"] = {"train": str(tok_dir / "train.npy"), "valid": str(tok_dir / "valid.npy")}
    (run / "config.json").write_text(json.dumps(config))
    model, tok = load_run(run)
    assert tok.decode(tok.encode("Once upon a time")) == "Once upon a time"
    assert len(tok.vocab) == model.vocab_size
    (tok_dir / "merges.txt").unlink()
    with pytest.raises(CS336Error, match="no tokenizer"):
        load_run(run)
