"""The encoder-decoder: beam search against greedy and teacher forcing, masks, and learning a tiny task."""
import pytest
import torch

from src.models.seq2seq import Seq2Seq

PAD, BOS, EOS = 0, 1, 2
V = 14


def batch(n=16, seed=0, min_len=2, max_len=7):
    """Random token sequences (ids 3..V-1) with EOS, padded; the target is the reversed source."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min_len, max_len + 1, (n,), generator=g)
    src = torch.full((n, max_len + 1), PAD)
    tgt = torch.full((n, max_len + 2), PAD)
    for i, L in enumerate(lens.tolist()):
        seq = torch.randint(3, V, (L,), generator=g)
        src[i, :L + 1] = torch.cat([seq, torch.tensor([EOS])])
        tgt[i, :L + 2] = torch.cat([torch.tensor([BOS]), seq.flip(0), torch.tensor([EOS])])
    return src, lens + 1, tgt


def bleu(net) -> float:
    """Corpus BLEU (sacreBLEU) of beam-search reversals of held-out sequences, tokens written as words."""
    import sacrebleu

    src, src_len, tgt = batch(n=64, seed=999)
    tokens, _ = net.beam_search(src, src_len, beam_size=3, max_len=12)
    words = lambda ids: " ".join(f"w{t}" for t in ids if t > EOS)  # noqa: E731

    def upto_eos(ids):
        return ids[:ids.index(EOS)] if EOS in ids else ids

    hyps = [words(upto_eos(t)) for t in tokens.tolist()]
    refs = [words(upto_eos(t[1:])) for t in tgt.tolist()]
    return sacrebleu.corpus_bleu(hyps, [refs]).score


def model(cell="gru", attention="general", **kw):
    torch.manual_seed(0)
    return Seq2Seq(V, V, cell=cell, attention=attention, emb_dim=32, hidden=32, dropout=0.0, **kw).eval()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_of_one_is_greedy(cell):
    net = model(cell)
    src, src_len, _ = batch()
    greedy, g_scores, _ = net.greedy(src, src_len, max_len=12)
    beam, b_scores = net.beam_search(src, src_len, beam_size=1, max_len=12, length_penalty=0.0)
    assert torch.equal(greedy, beam) and torch.allclose(g_scores, b_scores)
    # and greedy really is argmax at every step: recompute it step by step
    memory, mask, state, feed, keys = net._start(src, src_len)
    token = torch.full((src.shape[0],), BOS)
    for t in range(greedy.shape[1]):
        logits, feed, state, _ = net.step(token, feed, state, keys, memory, mask)
        token = logits.argmax(-1)
        live = (greedy[:, :t] != EOS).all(1) if t else torch.ones_like(token, dtype=torch.bool)
        assert torch.equal(token[live], greedy[live, t])


@pytest.mark.parametrize("cell,attention", [("gru", "general"), ("lstm", "additive"), ("gru", "dot")])
def test_beam_score_is_the_teacher_forced_log_probability(cell, attention):
    net = model(cell, attention)
    src, src_len, _ = batch(seed=1)
    tokens, scores = net.beam_search(src, src_len, beam_size=4, max_len=12, length_penalty=1.0)
    # finished or cut at max_len alike: the score covers exactly the tokens returned (PAD after EOS excluded)
    tgt = torch.cat([torch.full((src.shape[0], 1), BOS), tokens], dim=1)
    assert torch.allclose(scores, net.score(src, src_len, tgt), atol=1e-4)


def test_beam_finds_more_probable_translations_than_greedy():
    net = model()
    src, src_len, _ = batch(n=64, seed=2)
    _, greedy_scores, _ = net.greedy(src, src_len, max_len=12)
    _, beam_scores = net.beam_search(src, src_len, beam_size=5, max_len=12, length_penalty=0.0)
    assert beam_scores.mean() > greedy_scores.mean()
    assert (beam_scores >= greedy_scores - 1e-4).float().mean() > 0.9


@pytest.mark.parametrize("attention", ["additive", "dot", "general"])
def test_padding_is_never_attended_and_changes_nothing(attention):
    net = model("lstm", attention)
    src, src_len, tgt = batch(seed=3)
    wider = torch.cat([src, torch.full((src.shape[0], 5), PAD)], dim=1)
    tokens, _, attn = net.greedy(src, src_len, max_len=10)
    tokens_w, _, attn_w = net.greedy(wider, src_len, max_len=10)
    assert torch.equal(tokens, tokens_w)
    assert attn_w[:, :, src.shape[1]:].abs().max() == 0
    positions = torch.arange(src.shape[1])[None, None, :]
    assert attn[(positions >= src_len[:, None, None]).expand_as(attn)].abs().max() == 0
    assert torch.allclose(net(src, src_len, tgt[:, :-1]), net(wider, src_len, tgt[:, :-1]), atol=1e-5)


@pytest.mark.parametrize("cell,attention", [("gru", "additive"), ("lstm", "general"), ("gru", "dot")])
def test_learns_to_reverse(cell, attention):
    torch.manual_seed(0)
    net = Seq2Seq(V, V, cell=cell, attention=attention, emb_dim=32, hidden=48, dropout=0.0)
    bleu_before = bleu(net.eval())
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for step in range(150):
        src, src_len, tgt = batch(n=32, seed=100 + step)
        logits = net(src, src_len, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.25 * sum(losses[:10]) / 10
    net.eval()
    src, src_len, tgt = batch(n=64, seed=999)
    tokens, _ = net.beam_search(src, src_len, beam_size=3, max_len=12)
    exact = [tokens[i, :int(src_len[i])].tolist() == tgt[i, 1:int(src_len[i]) + 1].tolist() for i in range(64)]
    assert sum(exact) / 64 > 0.5
    assert bleu(net) > bleu_before + 40
    # a trained model finishes its sentences: beam scores are still the teacher-forced log-probabilities
    tokens, scores = net.beam_search(src, src_len, beam_size=3, max_len=12, length_penalty=1.0)
    assert (tokens == EOS).any(1).float().mean() > 0.9
    assert torch.allclose(scores, net.score(src, src_len, torch.cat([torch.full((64, 1), BOS), tokens], 1)), atol=1e-4)


def test_teacher_forcing_below_one_feeds_own_guesses():
    net = model()
    net.train()
    src, src_len, tgt = batch(seed=4)
    torch.manual_seed(1)
    a = net(src, src_len, tgt[:, :-1], teacher_forcing=1.0)
    b = net(src, src_len, tgt[:, :-1], teacher_forcing=0.0)
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_tied_embeddings_need_matching_sizes():
    with pytest.raises(ValueError, match="emb_dim"):
        Seq2Seq(V, V, emb_dim=32, hidden=32, tie_embeddings=True)
    net = Seq2Seq(V, V, emb_dim=64, hidden=32, tie_embeddings=True)
    assert net.out.weight is net.tgt_emb.weight
