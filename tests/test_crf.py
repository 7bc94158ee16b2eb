import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_adapter_ext.bio import bio_allowed_transitions
from hf_adapter_ext.modeling import crf as crf_module
from hf_adapter_ext.modeling.crf import CRF, FORBIDDEN
from hf_adapter_ext.modeling.outputs import viterbi_logits

from .crf_reference import reference_nll

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


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 4), n=st.integers(3, 5), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1.0, 1e2, 1e4, 1e6, 1e8]))
def test_viterbi_keeps_the_constraints_at_any_emission_scale(length, n, seed, scale):
    """Forbidden transitions weigh -1e4 in the loss; decoding treats them as impossible. Emissions of 1e4 and more
    outweighed the finite penalty, and the decoded path broke BIO (I-X after O) without an error. Reference: the
    best allowed path by brute force in float64."""
    crf = random_crf(n, seed, bio=True)
    emissions = torch.randn(1, length, n, generator=torch.Generator().manual_seed(seed + 1)) * scale
    trans, start, end = (x.detach().double() for x in crf._scores())
    e = emissions[0].double()

    def score(path):
        return start[path[0]] + end[path[-1]] + sum(e[t, label] for t, label in enumerate(path)) + sum(
            trans[a, b] for a, b in zip(path, path[1:]))

    allowed = [path for path in itertools.product(range(n), repeat=length) if crf.allowed_start[path[0]]
               and all(crf.allowed[a, b] for a, b in zip(path, path[1:]))]
    assert crf.decode(emissions)[0].tolist() == list(max(allowed, key=lambda path: score(path).item()))


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 4), seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 1e2, 1e4, 1e6]))
def test_marginals_put_no_mass_on_forbidden_paths_at_any_emission_scale(length, seed, scale):
    """Posterior label probabilities against brute force over the allowed paths (float64). With the loss's finite
    penalty, forbidden paths took the mass from emissions of 1e4 on (a probability off by up to 1)."""
    crf = random_crf(5, seed, bio=True)
    emissions = torch.randn(1, length, 5, generator=torch.Generator().manual_seed(seed + 1)) * scale
    trans, start, end = (x.detach().double() for x in crf._scores())
    e = emissions[0].double()
    paths = [path for path in itertools.product(range(5), repeat=length) if crf.allowed_start[path[0]]
             and all(crf.allowed[a, b] for a, b in zip(path, path[1:]))]
    weights = torch.stack([start[p[0]] + end[p[-1]] + sum(e[t, label] for t, label in enumerate(p))
                           + sum(trans[a, b] for a, b in zip(p, p[1:])) for p in paths]).softmax(0)
    expected = torch.zeros(length, 5, dtype=torch.float64)
    for weight, path in zip(weights, paths):
        expected[torch.arange(length), torch.tensor(path)] += weight
    torch.testing.assert_close(crf.marginals(emissions)[0].double(), expected, atol=1e-4, rtol=0)


def test_constraints_that_allow_no_path_are_refused_at_decoding():
    crf = CRF(2, allowed=torch.tensor([[False, False], [False, False]]))  # no step is allowed
    with pytest.raises(ValueError, match="No label path satisfies the CRF's constraints"):
        crf.decode(torch.zeros(1, 3, 2))
    assert crf.decode(torch.zeros(1, 1, 2)).shape == (1, 1)  # one position takes no step


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


def test_gold_path_no_allowed_path_fits_is_refused():
    """O -> I-A (IOB1 data) would cost |FORBIDDEN| ~ 1e4 and swamp training: refused, naming the labels."""
    crf = CRF.for_labels(LABELS)
    with pytest.raises(ValueError, match=r"'O' 'I-A' at token 1.*IOB2"):
        crf.neg_log_likelihood(torch.zeros(1, 2, 5), torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match=r"fit no path"):  # a sequence may not open with I-A either
        crf.neg_log_likelihood(torch.zeros(1, 2, 5), torch.tensor([[2, 2]]))
    # an ignored position may take any label: O, (B-A), I-A fits, and the loss is an ordinary one
    loss = crf.neg_log_likelihood(torch.zeros(1, 3, 5), torch.tensor([[0, -100, 2]]))
    assert torch.isfinite(loss) and loss < -FORBIDDEN / 100
    assert CRF.for_labels(LABELS, bio_constraints=False).neg_log_likelihood(  # nothing forbidden: nothing refused
        torch.zeros(1, 2, 5), torch.tensor([[0, 2]])) < 10


@settings(max_examples=80, deadline=None)
@given(st.data(), st.booleans())
def test_gold_labels_are_refused_exactly_when_no_allowed_path_fits_them(data, bio):
    """Against brute force over every path: labels (with -100 holes and padding anywhere) are refused iff no allowed
    path agrees with every observed label; where accepted, the loss is an ordinary number. BIO constraints take the
    check's loop-free branch; random sparse ones (where one free position cannot always join two labels) its
    reachability loop."""
    length = data.draw(st.integers(1, 5))
    labels = data.draw(st.lists(st.sampled_from([-100, 0, 1, 2, 3, 4]), min_size=length, max_size=length))
    mask = data.draw(st.lists(st.booleans(), min_size=length, max_size=length))
    if bio:
        crf = CRF.for_labels(LABELS)
    else:
        cells = data.draw(st.lists(st.booleans(), min_size=30, max_size=30))
        crf = CRF(5, torch.tensor(cells[:25]).view(5, 5), torch.tensor(cells[25:]))
    allowed, start = crf.allowed, crf.allowed_start
    kept = [label for label, on in zip(labels, mask) if on]
    fits = any(start[path[0]] and all(allowed[a, b] for a, b in zip(path, path[1:]))
               and all(k in (-100, p) for k, p in zip(kept, path))
               for path in itertools.product(range(len(LABELS)), repeat=len(kept))) if kept else True
    call = lambda: crf.sequence_nll(torch.zeros(1, length, len(LABELS)), torch.tensor([labels]),  # noqa: E731
                                    torch.tensor([mask]))
    if fits:
        assert float(call()) < -FORBIDDEN / 100
    else:
        with pytest.raises(ValueError, match="fit no path the CRF allows"):
            call()


def test_out_of_range_label_is_refused():
    crf = CRF(3)
    try:
        crf.neg_log_likelihood(torch.zeros(1, 2, 3), torch.tensor([[0, 7]]))
    except ValueError as err:
        assert "7" in str(err) and "-100" in str(err)
    else:
        raise AssertionError("expected ValueError")


SCALES = [(1, 1), (10, 10), (30, 1), (40, 1), (50, 20)]  # (emission sigma, transition sigma)


def _scaled_case(sigma_e, sigma_t, bio, length, left, latent, seed=0):
    labels = ["O", "B-A", "I-A", "B-B", "I-B", "B-C", "I-C"]
    g = torch.Generator().manual_seed(seed)
    crf = CRF.for_labels(labels, bio)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * sigma_t)
    lengths = torch.tensor([length, max(1, length // 2), max(1, length // 3), 1])
    mask = torch.arange(length)[None] < lengths[:, None]
    mask = mask.flip(1) if left else mask
    emissions = torch.randn(4, length, len(labels), generator=g) * sigma_e
    tags = crf.decode(torch.randn(4, length, len(labels), generator=g) * 3, mask).clamp(min=0)
    if latent:
        tags = tags.masked_fill(torch.rand(4, length, generator=g) < 0.3, -100)
    return crf, emissions, tags, mask


@pytest.mark.parametrize("path", ["products", "log-sum-exp"])
@pytest.mark.parametrize("bio", [False, True])
@pytest.mark.parametrize("sigma_e,sigma_t", SCALES)
@pytest.mark.parametrize("length,left,latent", [(40, False, False), (23, True, True)])
def test_nll_gradients_and_marginals_match_a_float64_reference_at_every_scale(
    monkeypatch, path, bio, sigma_e, sigma_t, length, left, latent
):
    if path == "log-sum-exp":  # force the exact fallback everywhere
        monkeypatch.setattr(crf_module, "_SAFE_SUM", float("inf"))
    crf, emissions, tags, mask = _scaled_case(sigma_e, sigma_t, bio, length, left, latent)
    ours = emissions.clone().requires_grad_(True)
    nll = crf.sequence_nll(ours, tags, mask)
    nll.sum().backward()
    trans, start, end = (x.detach().double().requires_grad_(True) for x in crf._scores())
    theirs = emissions.double().requires_grad_(True)
    reference = reference_nll(theirs, tags, mask, trans, start, end)
    reference.sum().backward()
    torch.testing.assert_close(nll.double(), reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.grad.double(), theirs.grad, rtol=1e-4, atol=1e-4)
    for param, ref in ((crf.transitions, trans), (crf.start_transitions, start), (crf.end_transitions, end)):
        allowed = torch.isfinite(ref.grad)
        torch.testing.assert_close(param.grad.double()[allowed], ref.grad[allowed], rtol=1e-4, atol=1e-4)
    # marginals: d log Z / d emissions of the reference with every label latent
    free = emissions.double().requires_grad_(True)
    log_z = reference_nll(free, torch.full_like(tags, -100), mask, trans, start, end, partition_only=True)
    (expected,) = torch.autograd.grad(log_z.sum(), free)
    torch.testing.assert_close(crf.marginals(emissions, mask).double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bio", [False, True])
@pytest.mark.parametrize("sigma_e,sigma_t", SCALES)
@pytest.mark.parametrize("length,left", [(40, False), (23, True), (300, True)])
def test_exported_graphs_marginals_match_a_float64_reference_at_every_scale(monkeypatch, bio, sigma_e, sigma_t,
                                                                           length, left):
    """The marginals an exported graph computes (forward-backward as two scans, no autograd) are the reference's."""
    crf, emissions, tags, mask = _scaled_case(sigma_e, sigma_t, bio, length, left, latent=False)
    trans, start, end = (x.detach().double() for x in crf._scores())
    free = emissions.double().requires_grad_(True)
    log_z = reference_nll(free, torch.full_like(tags, -100), mask, trans, start, end, partition_only=True)
    (expected,) = torch.autograd.grad(log_z.sum(), free)
    monkeypatch.setattr(crf_module, "is_tracing", lambda: True)  # the branch torch.export captures, run eagerly
    torch.testing.assert_close(crf.marginals(emissions, mask).double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sigma_e,sigma_t", SCALES)
@pytest.mark.parametrize("left", [False, True])
def test_eval_logits_decode_the_viterbi_path_and_score_each_tag_by_its_marginal(sigma_e, sigma_t, left):
    """What a pipeline reads from a CRF model: the argmax of the eval logits is the Viterbi path, and the softmax at
    the path's label is its posterior marginal (never below it; above it only where a label off the path is about
    as probable)."""
    crf, emissions, _, mask = _scaled_case(sigma_e, sigma_t, True, 30, left, latent=False)
    logits = viterbi_logits(crf, emissions, mask)
    path = crf.decode(emissions, mask)
    assert torch.equal(logits.argmax(-1)[mask], path[mask])
    marginals = crf.marginals(emissions, mask)
    index = path.clamp(min=0).unsqueeze(-1)
    on_path = marginals.gather(-1, index).squeeze(-1)[mask]
    scored = logits.softmax(-1).gather(-1, index).squeeze(-1)[mask]
    assert bool((scored >= on_path - 1e-5).all())  # float32 rounding: the marginals sum to 1 within it
    runner_up = marginals.scatter(-1, index, 0.0).amax(-1)[mask]
    clear = runner_up.clamp(min=1e-30).log() < on_path.clamp(min=1e-30).log() - 0.01
    torch.testing.assert_close(scored[clear], on_path[clear], rtol=1e-4, atol=1e-6)


def test_long_sequences_stay_exact():
    crf, emissions, tags, mask = _scaled_case(50, 20, True, 512, True, True, seed=3)
    trans, start, end = (x.detach().double() for x in crf._scores())
    reference = reference_nll(emissions.double(), tags, mask, trans, start, end)
    torch.testing.assert_close(crf.sequence_nll(emissions, tags, mask).double(), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_the_callers_dtype(dtype):
    crf, emissions, tags, mask = _scaled_case(10, 10, True, 30, False, True)
    half = emissions.to(dtype).requires_grad_(True)
    nll = crf.sequence_nll(half, tags, mask)
    nll.sum().backward()
    assert nll.dtype == dtype and half.grad.dtype == dtype and torch.isfinite(half.grad).all()
    full = emissions.to(dtype).float().requires_grad_(True)  # the same (rounded) inputs in float32
    expected = crf.sequence_nll(full, tags, mask)
    expected.sum().backward()
    torch.testing.assert_close(nll.float(), expected, rtol=1e-2, atol=1e-2)  # half's own rounding of the result
    torch.testing.assert_close(half.grad.float(), full.grad, rtol=1e-2, atol=1e-2)
    assert crf.decode(half, mask).tolist() == crf.decode(full, mask).tolist()


def test_non_finite_emissions_or_weights_never_decode_to_a_path():
    crf = random_crf(5, 0)
    emissions = torch.randn(2, 4, 5)
    emissions[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"sequence\(s\) \[1\].*NaN"):
        crf.decode(emissions)
    assert torch.isnan(crf.sequence_nll(emissions, torch.zeros(2, 4, dtype=torch.long))[1])
    with torch.no_grad():
        crf.transitions[0, 0] = float("inf")
    with pytest.raises(ValueError, match="transitions"):
        crf.decode(torch.randn(1, 3, 5))


def test_whatever_is_on_padding_does_not_leak_into_loss_or_gradients():
    crf = random_crf(5, 1)
    emissions = torch.randn(2, 5, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    tags = torch.randint(0, 5, (2, 5))
    clean = crf.neg_log_likelihood(emissions, tags, mask)
    dirty = emissions.clone()
    dirty[0, 3:] = float("nan")
    dirty.requires_grad_(True)
    loss = crf.neg_log_likelihood(dirty, tags, mask)
    loss.backward()
    torch.testing.assert_close(loss, clean)
    assert torch.isfinite(dirty.grad).all() and (dirty.grad[0, 3:] == 0).all()


def test_zero_length_sequences_give_zero_loss_and_an_empty_path():
    crf = random_crf(5, 0)
    emissions = torch.zeros(2, 0, 5, requires_grad=True)
    loss = crf.neg_log_likelihood(emissions, torch.zeros(2, 0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0 and crf.decode(emissions).shape == (2, 0)
