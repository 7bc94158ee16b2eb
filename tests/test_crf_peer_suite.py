"""pytorch-crf's own test cases (kmkurn/pytorch-crf, tests/test_crf.py), written again here and run against our
CRF through a thin shim with pytorch-crf's interface (tests/torchcrf_shim.py). Left out: TorchScript (our CRF
refuses tracing on purpose) and the exact wording of error messages. One deliberate difference is asserted
instead: pytorch-crf refuses a first time step that is padding; ours supports left padding."""

import itertools
import math
import random

import pytest
import torch

from .torchcrf_shim import TorchCRFShim as CRF

SEED = 1478754


def make_crf(num_tags=5, batch_first=False):
    torch.manual_seed(SEED)
    crf = CRF(num_tags, batch_first=batch_first)
    with torch.no_grad():
        for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
            p.uniform_(-0.1, 0.1)
    return crf


def score(crf, emission, tags):
    total = crf.start_transitions[tags[0]] + crf.end_transitions[tags[-1]]
    for a, b in zip(tags, tags[1:]):
        total = total + crf.transitions[a, b]
    for e, t in zip(emission, tags):
        total = total + e[t]
    return total.item()


def brute_llh(crf, emission, tags):
    scores = [score(crf, emission, t) for t in itertools.product(range(crf.num_tags), repeat=len(tags))]
    return score(crf, emission, tags) - math.log(sum(math.exp(s) for s in scores))


def brute_best(crf, emission):
    return list(max(itertools.product(range(crf.num_tags), repeat=len(emission)), key=lambda t: score(crf, emission, t)))


def random_case(seq=3, batch=2, tags=5):
    random.seed(SEED)
    torch.manual_seed(SEED)
    emissions = torch.randn(seq, batch, tags, requires_grad=True)
    labels = torch.tensor([[random.randrange(tags) for _ in range(batch)] for _ in range(seq)])
    mask = torch.tensor([[1] * batch] * (seq - 1) + [[1] * (batch - 1) + [0]], dtype=torch.uint8)
    return emissions, labels, mask


class TestInit:
    def test_minimal(self):
        crf = CRF(10)
        assert crf.num_tags == 10
        assert crf.start_transitions.shape == (10,) and crf.end_transitions.shape == (10,)
        assert crf.transitions.shape == (10, 10)
        assert all(isinstance(p, torch.nn.Parameter) for p in crf.parameters())

    def test_full(self):
        assert CRF(10, batch_first=True).batch_first

    def test_nonpositive_num_tags(self):
        with pytest.raises(ValueError, match="0"):
            CRF(0)


class TestForward:
    def test_works_with_mask(self):
        crf = make_crf()
        emissions, tags, mask = random_case()
        llh = crf(emissions, tags, mask=mask)
        expected = 0.0
        for e, t, m in zip(emissions.transpose(0, 1), tags.transpose(0, 1), mask.transpose(0, 1)):
            n = int(m.sum())
            expected += brute_llh(crf, e[:n], t[:n].tolist())
        assert llh.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
        llh.backward()
        assert emissions.grad is not None

    def test_works_without_mask(self):
        crf = make_crf()
        emissions, tags, _ = random_case()
        assert crf(emissions, tags).item() == pytest.approx(
            crf(emissions, tags, mask=torch.ones_like(tags, dtype=torch.uint8)).item(), rel=1e-6)

    def test_batched_loss(self):
        crf = make_crf()
        emissions, tags, _ = random_case(batch=10)
        llh = crf(emissions, tags)
        single = sum(crf(emissions[:, i : i + 1], tags[:, i : i + 1]).item() for i in range(10))
        assert llh.item() == pytest.approx(single, rel=1e-5)

    @pytest.mark.parametrize("reduction", ["none", "sum", "mean", "token_mean"])
    def test_reductions(self, reduction):
        crf = make_crf()
        emissions, tags, mask = random_case()
        per_sequence = [brute_llh(crf, e[: int(m.sum())], t[: int(m.sum())].tolist())
                        for e, t, m in zip(emissions.transpose(0, 1), tags.transpose(0, 1), mask.transpose(0, 1))]
        out = crf(emissions, tags, mask=mask, reduction=reduction)
        expected = {"none": per_sequence, "sum": sum(per_sequence), "mean": sum(per_sequence) / len(per_sequence),
                    "token_mean": sum(per_sequence) / int(mask.sum())}[reduction]
        assert out.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)

    def test_batch_first(self):
        crf, crf_bf = make_crf(), make_crf(batch_first=True)
        emissions, tags, mask = random_case()
        assert crf_bf(emissions.transpose(0, 1), tags.transpose(0, 1), mask.transpose(0, 1)).item() == pytest.approx(
            crf(emissions, tags, mask).item(), rel=1e-6)

    def test_emissions_has_bad_number_of_dimension(self):
        with pytest.raises(ValueError):
            make_crf(3)(torch.randn(1, 2), torch.zeros(2, 2, dtype=torch.long))

    def test_emissions_and_tags_size_mismatch(self):
        with pytest.raises(ValueError):
            make_crf(3)(torch.randn(1, 2, 3), torch.zeros(2, 2, dtype=torch.long))

    def test_emissions_last_dimension_not_equal_to_number_of_tags(self):
        with pytest.raises(ValueError):
            make_crf(10)(torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))

    def test_tags_has_bad_number_of_dimension(self):
        with pytest.raises(ValueError):
            make_crf(3)(torch.randn(1, 2, 3), torch.zeros(1, 2, 2, dtype=torch.long))

    def test_mask_and_tags_size_mismatch(self):
        with pytest.raises(ValueError):
            make_crf(3)(torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), mask=torch.ones(2, 1))

    def test_first_timestep_padding_is_supported_not_refused(self):
        crf = make_crf(3, batch_first=True)
        emissions, tags = torch.randn(1, 3, 3), torch.tensor([[0, 1, 2]])
        left = crf(emissions, tags, mask=torch.tensor([[0, 1, 1]]))
        assert left.item() == pytest.approx(crf(emissions[:, 1:], tags[:, 1:]).item(), rel=1e-6)

    def test_invalid_reduction(self):
        with pytest.raises(ValueError, match="invalid reduction"):
            make_crf(3)(torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), reduction="foo")


class TestDecode:
    def test_works_with_mask(self):
        crf = make_crf()
        emissions, _, mask = random_case()
        best = crf.decode(emissions, mask=mask)
        for e, path, m in zip(emissions.transpose(0, 1), best, mask.transpose(0, 1)):
            assert path == brute_best(crf, e[: int(m.sum())])

    def test_works_without_mask(self):
        crf = make_crf()
        emissions, _, _ = random_case()
        assert crf.decode(emissions) == [brute_best(crf, e) for e in emissions.transpose(0, 1)]

    def test_batched_decode(self):
        crf = make_crf()
        emissions, _, mask = random_case(batch=4)
        mask[1:, 2] = 0
        batched = crf.decode(emissions, mask=mask)
        single = [crf.decode(emissions[: int(mask[:, i].sum()), i : i + 1])[0] for i in range(4)]
        assert batched == single

    def test_batch_first(self):
        crf, crf_bf = make_crf(), make_crf(batch_first=True)
        emissions, _, mask = random_case()
        assert crf_bf.decode(emissions.transpose(0, 1), mask.transpose(0, 1)) == crf.decode(emissions, mask)

    def test_emissions_has_bad_number_of_dimension(self):
        with pytest.raises(ValueError):
            make_crf(3).decode(torch.randn(1, 2))

    def test_emissions_last_dimension_not_equal_to_number_of_tags(self):
        with pytest.raises(ValueError):
            make_crf(10).decode(torch.randn(1, 2, 3))

    def test_emissions_and_mask_size_mismatch(self):
        with pytest.raises(ValueError):
            make_crf(3).decode(torch.randn(1, 2, 3), mask=torch.ones(2, 2, dtype=torch.uint8))
