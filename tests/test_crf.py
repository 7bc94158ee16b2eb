import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_adapter_ext.adapter.crf import CRF, FORBIDDEN, bio_allowed_transitions

LABELS = ["O", "B-A", "I-A", "B-B", "I-B"]


def random_crf(num_labels, seed, bio=False):
    torch.manual_seed(seed)
    crf = CRF.for_labels(LABELS[:num_labels], bio) if bio else CRF(num_labels)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def path_score(crf, emissions, path):
    trans, start, end = crf._scores()
    score = start[path[0]] + emissions[0, path[0]]
    for a, b, t in zip(path, path[1:], range(1, len(path))):
        score = score + trans[a, b] + emissions[t, b]
    return score + end[path[-1]]


def brute_force(crf, emissions, labels=None):
    """log Z and (optionally) log of the mass of paths that agree with observed labels; best path."""
    length, n = emissions.shape
    scores = {p: path_score(crf, emissions, p) for p in itertools.product(range(n), repeat=length)}
    log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
    best = max(scores, key=lambda p: scores[p].item())
    if labels is None:
        return log_z, best
    agree = [s for p, s in scores.items() if all(y == -100 or y == q for y, q in zip(labels, p))]
    return log_z, torch.logsumexp(torch.stack(agree), 0), best


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 4), n=st.integers(2, 3), seed=st.integers(0, 10_000), data=st.data())
def test_nll_matches_brute_force_with_latent_positions(length, n, seed, data):
    crf = random_crf(n, seed)
    emissions = torch.randn(1, length, n, generator=torch.Generator().manual_seed(seed))
    labels = data.draw(st.lists(st.sampled_from([-100, *range(n)]), min_size=length, max_size=length))
    log_z, log_agree, _ = brute_force(crf, emissions[0], labels)
    nll = crf.neg_log_likelihood(emissions, torch.tensor([labels]))
    torch.testing.assert_close(nll, log_z - log_agree, atol=1e-4, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 4), n=st.integers(2, 5), seed=st.integers(0, 10_000), bio=st.booleans())
def test_viterbi_is_brute_force_argmax(length, n, seed, bio):
    crf = random_crf(n, seed, bio=bio)
    emissions = torch.randn(1, length, n, generator=torch.Generator().manual_seed(seed + 1))
    _, best = brute_force(crf, emissions[0])
    assert crf.decode(emissions)[0].tolist() == list(best)


def test_batched_masked_equals_one_by_one_and_padding_side_does_not_matter():
    crf = random_crf(5, 3)  # no constraints: random label sequences are legal paths
    torch.manual_seed(0)
    lengths = [5, 2, 4]
    emissions = torch.randn(3, 5, 5)
    mask = torch.tensor([[1] * n + [0] * (5 - n) for n in lengths])
    labels = torch.randint(0, 5, (3, 5)).masked_fill(torch.rand(3, 5) < 0.3, -100)
    batched = crf.neg_log_likelihood(emissions, labels, mask)
    single = [crf.neg_log_likelihood(emissions[i : i + 1, :n], labels[i : i + 1, :n]) for i, n in enumerate(lengths)]
    torch.testing.assert_close(batched, torch.stack(single).mean())
    paths = crf.decode(emissions, mask)
    for i, n in enumerate(lengths):
        assert paths[i, :n].tolist() == crf.decode(emissions[i : i + 1, :n])[0].tolist()
        assert (paths[i, n:] == -100).all()
    # the same sequences padded on the left
    left = torch.stack([torch.roll(emissions[i], 5 - n, 0) for i, n in enumerate(lengths)])
    left_mask = torch.stack([torch.roll(mask[i], 5 - n, 0) for i, n in enumerate(lengths)])
    left_labels = torch.stack([torch.roll(labels[i], 5 - n, 0) for i, n in enumerate(lengths)])
    torch.testing.assert_close(crf.neg_log_likelihood(left, left_labels, left_mask), batched)
    left_paths = crf.decode(left, left_mask)
    for i, n in enumerate(lengths):
        assert left_paths[i, 5 - n :].tolist() == paths[i, :n].tolist()


def test_bio_constraints_forbid_outside_to_inside():
    allowed, start = bio_allowed_transitions(LABELS)
    assert not allowed[0, 2] and allowed[1, 2] and allowed[2, 2] and not allowed[3, 2]
    assert not start[2] and start[1]
    crf = CRF.for_labels(LABELS)
    emissions = torch.zeros(1, 3, 5)
    emissions[0, :, 2] = 5.0  # I-A everywhere is tempting but illegal at the start
    path = crf.decode(emissions)[0].tolist()
    assert path[0] != 2
    assert all(not (a == 0 and b == 2) for a, b in zip(path, path[1:]))


def test_forbidden_gold_path_gives_large_finite_loss():
    crf = CRF.for_labels(LABELS)
    loss = crf.neg_log_likelihood(torch.zeros(1, 2, 5), torch.tensor([[0, 2]]))  # O -> I-A
    assert torch.isfinite(loss) and loss > -FORBIDDEN / 2


def test_out_of_range_label_is_refused():
    crf = CRF(3)
    try:
        crf.neg_log_likelihood(torch.zeros(1, 2, 3), torch.tensor([[0, 7]]))
    except ValueError as err:
        assert "7" in str(err) and "-100" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_fully_observed_fast_path_equals_the_forward_algorithm():
    crf = random_crf(5, 4)
    torch.manual_seed(1)
    emissions, labels = torch.randn(3, 6, 5), torch.randint(0, 5, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4]).bool()
    fast = crf.neg_log_likelihood(emissions, labels, mask)
    observed = torch.nn.functional.one_hot(labels, 5).bool()
    clamped = emissions.masked_fill(~observed, -1e4)
    slow = (crf._log_partition(emissions, mask) - crf._log_partition(clamped, mask, exact=True)).mean()
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-5)


def test_fast_partition_equals_exact_partition_on_extreme_scores():
    crf = random_crf(5, 5, bio=True)
    emissions = torch.randn(4, 30, 5) * 30  # large scores: terms far below the best are floored
    mask = torch.ones(4, 30, dtype=torch.bool)
    fast, exact = crf._log_partition(emissions, mask), crf._log_partition(emissions, mask, exact=True)
    torch.testing.assert_close(fast, exact, atol=1e-3, rtol=1e-5)
    emissions.requires_grad_(True)
    crf._log_partition(emissions, mask).sum().backward()
    assert torch.isfinite(emissions.grad).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), bio=st.booleans(), length=st.integers(1, 8))
def test_analytic_backward_matches_autograd_through_log_space(seed, bio, length):
    crf = random_crf(5, seed, bio=bio)
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(3, length, 5, generator=g, requires_grad=True)
    lengths = torch.randint(1, length + 1, (3,), generator=g)
    mask = torch.arange(length)[None] < lengths[:, None]
    weights = torch.randn(3, generator=g)
    params = [emissions, crf.transitions, crf.start_transitions, crf.end_transitions]
    fast = crf._log_partition(emissions, mask)
    exact = crf._log_partition(emissions, mask, exact=True)
    torch.testing.assert_close(fast, exact, atol=1e-4, rtol=1e-5)
    for a, b in zip(torch.autograd.grad((fast * weights).sum(), params, allow_unused=True),
                    torch.autograd.grad((exact * weights).sum(), params, allow_unused=True)):
        a = a if a is not None else torch.zeros_like(b)
        b = b if b is not None else torch.zeros_like(a)  # length 1: no transition is used
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
