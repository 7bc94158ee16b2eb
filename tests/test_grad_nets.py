"""SIB's synthetic-gradient nets against slow references: BatchNorm1d and plain layers applied to one episode's
real queries and classes at a time, in float64, forward and backward (the nets have a hand-written backward and
fold each norm's affine map into the next layer)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_adapter_ext.meta.grad_nets import (
    ClassEquivariantGradientNet,
    EpisodeNorm,
    episode_mean,
    episode_standardize,
)


def randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter drawn at random, so that no weight is the identity or zero (the output layer starts at 0)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))


def episode_rows(episodes: int, rows: int, seed: int) -> tuple[torch.Generator, torch.Tensor]:
    """A generator and a [episodes, rows] mask of real rows, two or more per episode (BatchNorm1d needs two)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(episodes, rows, generator=generator) < 0.7
    mask[:, :2] = True
    return generator, mask


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(2, 30), st.integers(1, 6), st.integers(0, 2**31 - 1), st.sampled_from([1e-3, 1.0, 1e3]))
def test_episode_norm_is_batch_norm_over_each_episodes_real_rows(episodes, rows, features, seed, magnitude):
    """Against BatchNorm1d in float64 on each episode's real rows alone, at small and large activation scales."""
    generator, mask = episode_rows(episodes, rows, seed)
    x = torch.randn(episodes, rows, features, generator=generator) * magnitude + magnitude
    norm = EpisodeNorm(features)
    randomise(norm, generator)
    reference = torch.nn.BatchNorm1d(features, eps=norm.eps).double().train()
    reference.load_state_dict({"weight": norm.weight, "bias": norm.bias}, strict=False)
    out = norm(x, mask)
    for b in range(episodes):
        expected = reference(x[b, mask[b]].double())
        torch.testing.assert_close(out[b, mask[b]].double(), expected, atol=1e-4, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(2, 30), st.integers(1, 6), st.integers(0, 2**31 - 1),
       st.sampled_from([1e-3, 1.0, 1e3]), st.booleans())
def test_episode_standardize_gradients_match_autograd_through_batch_norm(episodes, rows, features, seed, magnitude,
                                                                          rectify):
    """The hand-written backward against autograd through BatchNorm1d (affine off) on each episode's real rows;
    padded rows, standardised with their episode's statistics, take part in the loss too."""
    generator, mask = episode_rows(episodes, rows, seed)
    x = (torch.randn(episodes, rows, features, generator=generator, dtype=torch.float64) * magnitude).requires_grad_()
    upstream = torch.randn(episodes, rows, features, generator=generator, dtype=torch.float64)
    grad, = torch.autograd.grad((episode_standardize(x, mask, 1e-5, rectify) * upstream).sum(), x)

    x_ref = x.detach().clone().requires_grad_()
    loss = 0.0
    for b in range(episodes):
        y = torch.relu(x_ref[b]) if rectify else x_ref[b]
        real = y[mask[b]]
        mean, var = real.mean(0), real.var(0, unbiased=False)
        loss = loss + ((y - mean) / torch.sqrt(var + 1e-5) * upstream[b]).sum()
    expected, = torch.autograd.grad(loss, x_ref)
    torch.testing.assert_close(grad, expected, atol=1e-8 * max(1.0, 1 / magnitude), rtol=1e-6)


def test_episode_standardize_passes_gradcheck():
    generator, mask = episode_rows(3, 9, 0)
    x = torch.randn(3, 9, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    for rectify in (False, True):
        assert torch.autograd.gradcheck(lambda t, r=rectify: episode_standardize(t, mask, 1e-5, r), (x,))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_episode_mean_is_the_mean_of_each_episodes_real_rows(episodes, rows, features, seed):
    """Against a one-episode-at-a-time float64 mean; an episode with no real row gives 0."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(episodes, rows, features, generator=generator, dtype=torch.float64)
    mask = torch.rand(episodes, rows, generator=generator) < 0.6
    mask[0] = False
    for b, mean in enumerate(episode_mean(x, mask)):
        expected = x[b, mask[b]].mean(0) if mask[b].any() else torch.zeros(features, dtype=torch.float64)
        torch.testing.assert_close(mean[0], expected)


def equivariant_net_on_one_episode(net: ClassEquivariantGradientNet, logits: torch.Tensor) -> torch.Tensor:
    """The net's definition, layer by layer, on one episode's real [queries, classes] logits: BatchNorm1d over
    its (query, class) pairs, each norm's affine map applied where it stands."""
    queries, classes = logits.shape
    probs = logits.softmax(-1)
    x = torch.stack([logits - logits.mean(-1, keepdim=True), probs * classes,
                     probs.mean(0).expand_as(probs) * classes], dim=-1)
    for layer, norm in ((net.first, net.first_norm), (net.second, net.second_norm)):
        x = torch.relu(layer.own(x) + layer.pooled(x.mean(1, keepdim=True)))
        batch_norm = torch.nn.BatchNorm1d(x.size(-1), eps=norm.eps).double().train()
        batch_norm.weight, batch_norm.bias = norm.weight, norm.bias
        x = batch_norm(x.reshape(queries * classes, -1)).reshape(queries, classes, -1)
    return net.out(x).squeeze(-1) * net.REFERENCE_QUERIES / queries


@pytest.mark.parametrize("seed", range(6))
def test_equivariant_net_matches_its_definition_episode_by_episode_forward_and_backward(seed):
    """Batched with padded queries and absent classes, against the plain layers on each episode's real queries
    and classes; gradients for the logits and for every parameter, float64."""
    generator = torch.Generator().manual_seed(seed)
    episodes, queries, classes = 3, 11, 6
    net = ClassEquivariantGradientNet(2).double()
    randomise(net, generator)
    logits = (3 * torch.randn(episodes, queries, classes, generator=generator, dtype=torch.float64)).requires_grad_()
    query_mask = torch.rand(episodes, queries, generator=generator) < 0.7
    query_mask[:, :2] = True
    class_mask = torch.rand(episodes, classes, generator=generator) < 0.7
    class_mask[:, :2] = True
    class_mask[0] = True  # one episode with every class: the net's unmasked class mean
    upstream = torch.randn(episodes, queries, classes, generator=generator, dtype=torch.float64)
    out = net(logits, query_mask, class_mask)
    parameters = [logits, *net.parameters()]
    grads = torch.autograd.grad((out * upstream).sum(), parameters)

    expected_out = torch.zeros_like(out)
    loss = 0.0
    for b in range(episodes):
        real = logits[b][query_mask[b]][:, class_mask[b]]
        got = equivariant_net_on_one_episode(net, real)
        rows = query_mask[b].nonzero()[:, 0]
        expected_out[b, rows[:, None], class_mask[b].nonzero()[:, 0][None, :]] = got.detach()
        loss = loss + (got * upstream[b][query_mask[b]][:, class_mask[b]]).sum()
    expected = torch.autograd.grad(loss, parameters)
    torch.testing.assert_close(out.detach(), expected_out)
    for parameter, grad, want in zip(["logits", *dict(net.named_parameters())], grads, expected):
        torch.testing.assert_close(grad, want, msg=lambda m, name=parameter: f"{name}: {m}")


def test_episode_standardize_refuses_a_second_derivative():
    """Meta-training differentiates through the refinement once; a double backward would be silently wrong
    without ``once_differentiable``."""
    _, mask = episode_rows(1, 5, 0)
    x = torch.randn(1, 5, 3, dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad((episode_standardize(x, mask, 1e-5) ** 3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


def test_fixed_net_norms_match_batch_norm_gradients():
    """EpisodeNorm (affine on) against BatchNorm1d's autograd on a one-episode batch with every row real."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 12, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    norm = EpisodeNorm(5).double()
    randomise(norm, generator)
    reference = torch.nn.BatchNorm1d(5, eps=norm.eps).double().train()
    reference.weight, reference.bias = norm.weight, norm.bias
    upstream = torch.randn(1, 12, 5, generator=generator, dtype=torch.float64)
    got = torch.autograd.grad((norm(x, torch.ones(1, 12, dtype=torch.bool)) * upstream).sum(), [x, *norm.parameters()])
    want = torch.autograd.grad((reference(x[0]) * upstream[0]).sum(), [x, *norm.parameters()])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
