import json

import pytest
import torch

from cs336 import Tokenizer, TransformerLM
from cs336.cli import main
from cs336.data import tiktoken_gpt2
from cs336.errors import CS336Error
from cs336.export import check_llama_compatible, llama_config, rope_adjacent_to_half, save_hf, tokenizer_json
from cs336.runs import load_run
from cs336.tokenization import END_OF_TEXT
from run_factory import gpt2_bpe, make_run

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


def trained_looking_lm(seed=0, **kwargs):
    """A random model whose norm gains are not all 1, so a wrong norm mapping would show."""
    torch.manual_seed(seed)
    model = TransformerLM(**{**dict(vocab_size=97, context_length=24, d_model=48, num_layers=2, num_heads=4, d_ff=80, rope_theta=10000.0), **kwargs})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_final.weight":
                p.uniform_(0.5, 1.5)
    return model.eval()


def load_llama(path):
    return transformers.LlamaForCausalLM.from_pretrained(path, local_files_only=True).eval()


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(tie_embeddings=True), dict(rope_theta=50.0), dict(num_heads=2, d_ff=64, num_layers=3)],
)
def test_transformers_llama_gives_our_logits(tmp_path, kwargs):
    model = trained_looking_lm(**kwargs)
    save_hf(model, tmp_path)
    llama = load_llama(tmp_path)
    ids = torch.randint(0, model.vocab_size, (2, model.context_length))
    with torch.no_grad():
        torch.testing.assert_close(llama(ids).logits, model(ids), atol=1e-4, rtol=0)
    assert llama.config.tie_word_embeddings == model.tie_embeddings


def test_rope_permutation_puts_even_rows_first_within_each_head():
    w = torch.arange(12.0)[:, None]
    assert rope_adjacent_to_half(w, num_heads=2).flatten().tolist() == [0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11]


@pytest.mark.parametrize(
    "kwargs,what",
    [(dict(norm="post"), "norm='post'"), (dict(norm="none"), "norm='none'"), (dict(position="nope"), "position='nope'"), (dict(ffn="silu"), "ffn='silu'")],
)
def test_ablations_llama_cannot_express_are_refused(tmp_path, kwargs, what):
    with pytest.raises(CS336Error, match=f"cannot export to Llama: {what}"):
        save_hf(trained_looking_lm(**kwargs), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_llama_config_matches_the_model():
    cfg = llama_config(trained_looking_lm(rope_theta=500.0))
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], cfg["rms_norm_eps"], cfg["rope_theta"]) == (48, 80, 4, 1e-5, 500.0)


TEXTS = [
    "Once upon a time, there was a little girl named Lily.<|endoftext|>She liked to play.",
    "Hello,   world!\n\n  tabs\tand 🙂 emoji, héllo naïve café 1234567 it's they'll we've I'd",
    "<|endoftext|><|endoftext|>x<|endoftext|>",
    " leading and trailing spaces  ",
    "",
]


def hf_tokenizer(vocab, merges, specials):
    return tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(vocab, merges, specials)))


def test_tokenizer_json_encodes_like_tiktoken_gpt2(data_dir):
    vocab, merges = gpt2_bpe(data_dir)
    hf = hf_tokenizer(vocab, merges, [END_OF_TEXT])
    gpt2 = tiktoken_gpt2()
    fixtures = [(data_dir / "cs336-fixtures" / f).read_text(encoding="utf-8") for f in ("address.txt", "german.txt", "tinystories_sample.txt")]
    for text in TEXTS + fixtures:
        assert hf.encode(text).ids == gpt2.encode(text, allowed_special="all")


@pytest.mark.parametrize("specials", [[END_OF_TEXT], [END_OF_TEXT, END_OF_TEXT + END_OF_TEXT]])
def test_tokenizer_json_encodes_like_our_tokenizer(data_dir, specials):
    vocab, merges = gpt2_bpe(data_dir, 300)
    ours = Tokenizer(vocab, merges, special_tokens=specials)
    hf = hf_tokenizer(ours.vocab, ours.merges, specials)
    sample = (data_dir / "cs336-fixtures" / "tinystories_sample.txt").read_text(encoding="utf-8")
    for text in TEXTS + [sample]:
        ids = ours.encode(text)
        assert hf.encode(text).ids == ids
        assert hf.decode(ids, skip_special_tokens=False) == ours.decode(ids)


def test_tokenizer_json_refuses_a_special_token_missing_from_the_vocab(data_dir):
    vocab, merges = gpt2_bpe(data_dir, 10)
    with pytest.raises(CS336Error, match="not in the vocabulary"):
        tokenizer_json(vocab, merges, ["<|pad|>"])


def test_cli_export_writes_a_directory_transformers_and_tokenizers_load(tmp_path, data_dir, capsys):
    run = make_run(tmp_path / "run", data_dir, num_merges=150, tie_embeddings=True)
    out = tmp_path / "hf"
    assert main(["export", "--run", str(run), "--to", "hf", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    model, tok = load_run(run)
    text = "Once upon a time, Tom saw a big dog . Hi !<|endoftext|>"
    ids = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json")).encode(text).ids
    assert ids == tok.encode(text)
    auto = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert auto(text).input_ids == ids and auto.decode(ids) == text and auto.eos_token == END_OF_TEXT
    llama = load_llama(out)
    assert llama.config.eos_token_id == tok.encode(END_OF_TEXT)[0]
    # The exported model computes our logits. (An untrained model's logits are nearly tied, so
    # comparing greedy continuations here would test rounding, not the export.)
    with torch.no_grad():
        hf_logits = llama(torch.tensor([ids])).logits[0]
        our_logits = model(torch.tensor(ids))
    torch.testing.assert_close(hf_logits, our_logits, atol=1e-4, rtol=1e-4)


def test_cli_export_refuses_unknown_formats(tmp_path, data_dir, capsys):
    run = make_run(tmp_path / "run", data_dir, num_merges=50)
    assert main(["export", "--run", str(run), "--to", "onnx", str(tmp_path / "x")]) == 2
    assert "error: unknown export format 'onnx'" in capsys.readouterr().err


def test_a_failed_export_keeps_the_previous_one_and_leaves_no_partial_files(tmp_path, monkeypatch):
    out = tmp_path / "hf"
    save_hf(trained_looking_lm(seed=0), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_hf(trained_looking_lm(seed=1), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("kwargs,what", [(dict(ffn="relu2"), "ffn='relu2'"), (dict(qk_norm=True), "qk_norm=True"),
                                         (dict(logit_softcap=30.0), "logit_softcap=30.0"),
                                         (dict(value_residual=True), "value_residual=True"),
                                         (dict(residual_scalars=True), "residual_scalars=True")])
def test_switches_llama_cannot_express_are_refused(tmp_path, kwargs, what):
    with pytest.raises(CS336Error, match=f"cannot export to Llama: {what}"):
        save_hf(trained_looking_lm(**kwargs), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_zero_init_output_is_only_an_initialisation_and_exports(tmp_path):
    model = trained_looking_lm(zero_init_output=True)
    check_llama_compatible(model)
    save_hf(model, tmp_path)
    assert (tmp_path / "model.safetensors").exists()
