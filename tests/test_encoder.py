"""Flax BERT + TextEncoder: parity with transformers' PyTorch BertModel, loading errors, buckets, feature cache."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local; never touch the hub

from prior_rl.llm.bert import BertLoadError, load_bert  # noqa: E402
from prior_rl.llm.cache import PriorCache  # noqa: E402
from prior_rl.llm.encoder import TextEncoder, load_encoder, minilm_path  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4
TEXTS = [
    "open the fridge",
    "go north",
    "Observation: You are in the middle of a room. Looking quickly around you, you see a cabinet 4, a cabinet 3, "
    "a countertop 1, a fridge 1 and a microwave 1.,  Action: open fridge 1.",
    "Observation: Tomato: the chopped tomato is on the cutting board 1. You are holding a plate.,  Action: Chop.",
    "x",
    "",
]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return load_encoder("minilm")


@pytest.fixture(scope="module")
def torch_minilm():
    d = str(minilm_path())
    return transformers.AutoTokenizer.from_pretrained(d), transformers.BertModel.from_pretrained(d).eval()


def _torch_features(tok, model, texts, pooling, normalize):
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    if pooling == "cls":
        out = h[:, 0]
    else:
        m = batch["attention_mask"][..., None].float()
        out = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if normalize:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.numpy(), batch


def test_minilm_defaults(minilm):
    assert minilm.name == "all-MiniLM-L6-v2"
    assert minilm.dim == 384 and minilm.pooling == "mean" and minilm.normalize
    assert minilm.max_length == 256  # sentence_bert_config.json, not the tokenizer.json's pinned 128
    feats = minilm.encode(TEXTS)
    assert feats.shape == (len(TEXTS), 384) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_minilm_mean_parity_with_torch(minilm, torch_minilm):
    tok, model = torch_minilm
    ref, batch = _torch_features(tok, model, TEXTS, "mean", True)
    # identical token ids (our tokenizers-only path vs transformers' tokenizer)
    hf_ids = [ids[m.bool()].tolist() for ids, m in zip(batch["input_ids"], batch["attention_mask"])]
    assert minilm.tokenize(TEXTS) == hf_ids
    ours = minilm.encode_uncached(TEXTS)
    assert np.abs(ours - ref).max() <= TOL


def test_minilm_cls_parity_with_torch(torch_minilm):
    tok, model = torch_minilm
    enc = load_encoder("minilm", pooling="cls")
    assert enc.pooling == "cls" and not enc.normalize  # the paper's raw [CLS] vector
    ref, _ = _torch_features(tok, model, TEXTS, "cls", False)
    ours = enc.encode(TEXTS)
    assert np.abs(ours - ref).max() <= TOL
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)


def test_semantic_sanity(minilm):
    a, b, c = minilm.encode(["open the fridge", "open fridge", "go north"])
    assert float(a @ b) > float(a @ c) + 0.3  # sentence-transformers: 0.923 vs 0.236
    assert float(a @ b) == pytest.approx(0.923, abs=0.01)


def _perturb_and_save(model, path):
    """Random biases and LayerNorm gains so that every mapped tensor (not just the matrices) matters."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    model.eval().save_pretrained(path)


@pytest.fixture(scope="module")
def vocab_file() -> str:
    return str(minilm_path() / "vocab.txt")


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_tiny_random_bert_parity(tmp_path, vocab_file, hidden_act):
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        hidden_act=hidden_act,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg)
    _perturb_and_save(model, tmp_path)
    tok = transformers.BertTokenizerFast(vocab_file)
    tok.save_pretrained(tmp_path)
    texts = TEXTS[:4]
    for pooling, normalize in (("cls", False), ("mean", True)):
        enc = load_encoder(tmp_path, pooling=pooling)
        assert enc.dim == 48 and enc.normalize == normalize and enc.max_length == 64
        ref, _ = _torch_features(tok, model, texts, pooling, normalize)
        assert np.abs(enc.encode(texts) - ref).max() <= TOL
    assert load_encoder(tmp_path).pooling == "cls"  # plain HF BERT dir: the paper's CLS by default


def test_token_classification_checkpoint_and_vocab_only_tokenizer(tmp_path, vocab_file):
    """The paper loaded bert-base through AutoModelForTokenClassification: 'bert.'-prefixed names + a head."""
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    torch.manual_seed(1)
    model = transformers.BertForTokenClassification(cfg)
    _perturb_and_save(model, tmp_path)
    shutil.copy(vocab_file, tmp_path / "vocab.txt")  # no tokenizer.json: WordPiece rebuilt from vocab.txt
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    enc = load_encoder(tmp_path, pooling="cls")
    tok = transformers.BertTokenizerFast(vocab_file)
    assert enc.tokenize(TEXTS) == [tok(t)["input_ids"] for t in TEXTS]
    ref, _ = _torch_features(tok, model.bert, TEXTS, "cls", False)
    assert np.abs(enc.encode(TEXTS) - ref).max() <= TOL


def test_truncation_to_max_length(minilm):
    long_text = " ".join(["fridge"] * 400)
    assert len(minilm.tokenize([long_text])[0]) == 256
    enc = load_encoder("minilm", max_length=16)
    ids = enc.tokenize([long_text])[0]
    assert len(ids) == 16 and ids[-1] == enc.tokenizer.token_to_id("[SEP]")
    assert enc.encode([long_text]).shape == (1, 384)


# -- errors ------------------------------------------------------------------------------------------------------


def test_unknown_spec_lists_valid_specs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"minilm"):
        load_encoder("bert-base-uncased-from-the-hub")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bert(tmp_path / "nope")
    with pytest.raises(ValueError, match="pooling"):
        load_encoder("minilm", pooling="max")


def _copy_minilm(dst):
    src = minilm_path()
    for name in ("config.json", "tokenizer.json", "vocab.txt"):
        shutil.copy(src / name, dst / name)


def test_corrupt_weights_clear_error(tmp_path):
    _copy_minilm(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_encoder(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        load_encoder(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(BertLoadError, match="model.safetensors"):
        load_encoder(tmp_path)
    full = (minilm_path() / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(full[: len(full) // 2])  # truncated download
    with pytest.raises(BertLoadError, match="cannot read safetensors"):
        load_encoder(tmp_path)


def test_missing_tensor_and_shape_mismatch(tmp_path):
    from safetensors.numpy import load_file, save_file

    _copy_minilm(tmp_path)
    tensors = load_file(str(minilm_path() / "model.safetensors"))
    partial = {k: v for k, v in tensors.items() if "layer.5." not in k}
    save_file(partial, str(tmp_path / "model.safetensors"))
    with pytest.raises(BertLoadError, match=r"encoder\.layer\.5\."):
        load_encoder(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["num_hidden_layers"] = 5
    cfg["hidden_size"], cfg["num_attention_heads"] = 768, 12
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BertLoadError, match="shape"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BertLoadError, match="config.json"):
        load_encoder(tmp_path)


def test_non_string_inputs(minilm):
    with pytest.raises(TypeError, match="sequence of strings"):
        minilm.encode("open the fridge")
    with pytest.raises(TypeError):
        minilm.encode(["ok", 3])
    assert minilm.encode([]).shape == (0, 384)


# -- shapes, batching, caching -----------------------------------------------------------------------------------


def test_no_recompilation_within_a_bucket():
    enc = load_encoder("minilm", batch_size=8)
    enc.encode(["open the fridge"])  # 5 tokens → bucket 16, batch 1
    traces, compiled = enc.trace_count, enc._forward._cache_size()
    assert traces == 1 and compiled == 1
    enc.encode(["take the red apple from the kitchen counter"])  # 10 tokens: same bucket, other length
    enc.encode(["go north"])
    assert (enc.trace_count, enc._forward._cache_size()) == (traces, compiled)
    enc.encode(["a", "b", "c"])  # 3 texts → batch bucket 4: one new shape
    enc.encode(["d", "e", "f", "g"])  # 4 texts → same shape
    assert enc.trace_count == traces + 1
    enc.encode([" ".join(["word"] * 20)])  # 22 tokens → bucket 24: one new shape
    assert enc.trace_count == traces + 2 and enc._forward._cache_size() == compiled + 2


def test_chunked_batches_match_one_by_one():
    enc = load_encoder("minilm", batch_size=4)  # 11 texts → chunks of 4, 4, 3 with mixed length buckets
    texts = TEXTS + ["put a mug in the cabinet", " ".join(["apple"] * 30), "heat the potato", "a b c", "go south"]
    together = enc.encode_uncached(texts)
    one_by_one = np.concatenate([enc.encode_uncached([t]) for t in texts])
    assert np.abs(together - one_by_one).max() <= 1e-5


def test_feature_cache_counts_and_round_trip(tmp_path):
    enc = load_encoder("minilm")
    first = enc.encode(["open the fridge", "go north", "open the fridge"])
    assert (enc.cache.hits, enc.cache.misses) == (1, 2)  # the duplicate is computed once
    assert enc.texts_computed == 2
    np.testing.assert_array_equal(first[0], first[2])
    again = enc.encode(["go north", "open the fridge"])
    assert (enc.cache.hits, enc.cache.misses) == (3, 2) and enc.texts_computed == 2
    np.testing.assert_array_equal(again, first[[1, 0]])
    path = enc.cache.save(tmp_path / "features.npz")

    warm = load_encoder("minilm", cache=PriorCache.load(path))
    np.testing.assert_array_equal(warm.encode(["open the fridge", "go north"]), first[:2])
    assert warm.cache.hits == 2 and warm.cache.misses == 0 and warm.trace_count == 0  # nothing computed

    # another pooling must not reuse these features: the key holds the encoder's cache_id
    cls = load_encoder("minilm", pooling="cls", cache=PriorCache.load(path))
    assert cls.cache_id != warm.cache_id
    cls.encode(["open the fridge"])
    assert cls.cache.misses == 1 and cls.texts_computed == 1
    stats = enc.stats()
    assert stats["texts_computed"] == 2 and stats["texts_per_s"] > 0 and stats["traces"] >= 1
