import evaluate

from hf_adapter_ext.metrics import ENTITY_F1


def test_entity_f1_module_loads_offline_and_splits_old_and_new_types():
    metric = evaluate.load(ENTITY_F1)
    scores = metric.compute(
        predictions=[["B-PER", "O", "O", "O", "B-ORG", "B-LOC", "B-LOC"]],
        references=[["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "O", "B-LOC"]],
        new_types=["LOC"],
    )
    # gold: PER(0-2), LOC(3), ORG(4), LOC(6); predicted: PER(0), ORG(4), LOC(5), LOC(6)
    assert scores["ORG_f1"] == 1.0 and scores["PER_f1"] == 0.0
    assert scores["new_precision"] == 0.5 and scores["new_recall"] == 0.5
    assert scores["old_precision"] == 0.5 and scores["old_recall"] == 0.5
    assert abs(scores["overall_f1"] - 0.5) < 1e-9 and scores["LOC_support"] == 2


def test_forgotten_types_names_an_old_type_a_new_one_swallowed():
    from hf_adapter_ext.metrics import forgotten_types

    before = {"PER_f1": 0.925, "PER_support": 10, "ORG_f1": 0.8, "ORG_support": 5, "old_f1": 0.86}
    after = {"PER_f1": 0.009, "PER_support": 10, "ORG_f1": 0.79, "ORG_support": 5, "politician_f1": 0.7,
             "politician_support": 3}
    assert forgotten_types(before, after, ["politician"]) == {"PER": (0.925, 0.009)}
    assert forgotten_types(before, before) == {}


def test_bio_invalid_spans_counts_the_i_tags_that_open_an_entity():
    from hf_adapter_ext.metrics import bio_invalid_spans

    predictions = [["I-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "I-LOC", "B-ORG", "I-MISC"]]
    assert bio_invalid_spans(predictions) == 3  # I-PER at the start, I-LOC after O, I-MISC after ORG
    assert bio_invalid_spans([["B-PER", "I-PER", "O"]]) == 0


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def brute_force_bio_path(log_probs, scored):
    """The highest-scoring tag sequence of the scored positions that BIO allows, by trying every sequence."""
    import itertools

    from hf_adapter_ext.metrics import bio_invalid_spans

    positions = [t for t, keep in enumerate(scored) if keep]
    best, best_score = None, float("-inf")
    for ids in itertools.product(range(len(LABELS)), repeat=len(positions)):
        if bio_invalid_spans([[LABELS[i] for i in ids]]):
            continue
        score = sum(float(log_probs[t, i]) for t, i in zip(positions, ids))
        if score > best_score:
            best, best_score = ids, score
    return list(best), best_score


def test_bio_decoder_finds_the_most_probable_valid_sequence_as_brute_force_does():
    """Over random scores at scales from near-uniform to near-certain, and words scattered between unscored
    sub-tokens, the decoded tags are exactly the best BIO-valid sequence found by trying every one (float64)."""
    import torch
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hf_adapter_ext.metrics import bio_decoder, bio_invalid_spans

    decoder = bio_decoder(dict(enumerate(LABELS)))

    @settings(max_examples=60, deadline=None)
    @given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 6), scale=st.sampled_from([0.01, 1.0, 10.0, 100.0]))
    def check(seed, length, scale):
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(1, length, len(LABELS), generator=generator, dtype=torch.float64) * scale
        scored = torch.rand(1, length, generator=generator) < 0.7
        scored[0, 0] = True
        log_probs = torch.log_softmax(logits, dim=-1)
        path = decoder.decode(log_probs.float(), scored)[0]
        _, best = brute_force_bio_path(log_probs[0], scored[0].tolist())
        found = [int(i) for i, keep in zip(path, scored[0]) if keep]
        score = sum(float(log_probs[0, t, i]) for t, i in zip(scored[0].nonzero()[:, 0].tolist(), found))
        assert abs(score - best) <= 1e-4 * max(1.0, abs(best))  # the best score (a tie may pick another path)
        assert not bio_invalid_spans([[LABELS[i] for i in found]])
        assert bool((path[~scored[0]] == -100).all())  # unscored sub-tokens get no tag

    check()


def test_bio_viterbi_of_the_shipped_pipeline_finds_the_brute_force_best_sequence():
    """The numpy decoder a consolidated model carries (hf_adapter_ext/bio.py), against trying every sequence in float64,
    at scales from near-uniform to near-certain."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hf_adapter_ext.bio import bio_allowed_transitions, bio_viterbi
    from hf_adapter_ext.metrics import bio_invalid_spans

    masks = bio_allowed_transitions(LABELS)

    @settings(max_examples=60, deadline=None)
    @given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 6), scale=st.sampled_from([0.01, 1.0, 10.0, 100.0]))
    def check(seed, length, scale):
        logits = np.random.default_rng(seed).normal(size=(length, len(LABELS))) * scale
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        path = bio_viterbi(log_probs, *masks)
        _, best = brute_force_bio_path(log_probs, [True] * length)
        assert abs(sum(log_probs[t, i] for t, i in enumerate(path)) - best) <= 1e-9 * max(1.0, abs(best))
        assert not bio_invalid_spans([[LABELS[i] for i in path]])

    check()


def test_predict_tags_bio_decoding_breaks_no_span_and_keeps_valid_argmax_tags(tokenizer):
    import torch

    from hf_adapter_ext.metrics import bio_invalid_spans, predict_tags
    from tests.conftest import tiny_source
    from tests.helpers import ALL_LABELS, toy_dataset

    model = tiny_source(labels=ALL_LABELS)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)  # random, confident tags: many broken spans
    data = toy_dataset(tokenizer, repeat=3)
    id2label = model.config.id2label
    argmax, gold = predict_tags(model, data, tokenizer, id2label)
    decoded, gold_again = predict_tags(model, data, tokenizer, id2label, decoding="bio")
    assert gold == gold_again and bio_invalid_spans(argmax) > 0 and bio_invalid_spans(decoded) == 0
    for a, d in zip(argmax, decoded):
        assert len(a) == len(d)
        if not bio_invalid_spans([a]):
            assert a == d  # where token-by-token tags already make a valid sequence, decoding keeps them


def test_bio_decoding_of_a_half_precision_model_breaks_no_span(tokenizer):
    """A bfloat16 model (what `TrainingArguments(bf16=True)` leaves behind) is decoded over float32 log-probabilities
    of its own scores: the same tags as the float32 decoding of those scores, and no broken span."""
    import torch

    from hf_adapter_ext.metrics import bio_invalid_spans, predict_tags
    from tests.conftest import tiny_source
    from tests.helpers import ALL_LABELS, toy_dataset

    model = tiny_source(labels=ALL_LABELS)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)
    model = model.to(torch.bfloat16)
    data = toy_dataset(tokenizer, repeat=2)
    id2label = model.config.id2label
    decoded, _ = predict_tags(model, data, tokenizer, id2label, decoding="bio")
    assert bio_invalid_spans(decoded) == 0 and sum(len(row) for row in decoded) > 0
    reference, _ = predict_tags(model.to(torch.float32), data, tokenizer, id2label, decoding="bio")
    agree = sum(a == b for x, y in zip(decoded, reference) for a, b in zip(x, y)) / sum(len(x) for x in reference)
    assert agree >= 0.9  # bfloat16 scores round differently from the same weights in float32; most tags hold


def test_batch_eval_metrics_scores_the_whole_set_as_one_evaluation_does():
    """Trainer(batch_eval_metrics=True) hands compute_metrics one batch at a time (tensors) with compute_result:
    the batches are scored together at the last one, as the concatenated evaluation is, and the next evaluation
    starts afresh."""
    import numpy as np
    import torch

    from hf_adapter_ext.metrics import entity_f1_compute_metrics

    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(12, 7, 5))
    labels = rng.integers(0, 5, size=(12, 7))
    labels[:, 0] = -100
    labels = np.where(labels == 2, 1, labels)  # gold never opens an entity with I- (IOB2)
    labels = np.where(labels == 4, 3, labels)
    whole = entity_f1_compute_metrics(id2label, ["LOC"])((scores, labels))
    batched = entity_f1_compute_metrics(id2label, ["LOC"])
    for _ in range(2):  # two evaluations in a row: the second is not mixed with the first
        parts = [batched((torch.tensor(scores[i:i + 5]), torch.tensor(labels[i:i + 5])), compute_result=i + 5 >= 12)
                 for i in range(0, 12, 5)]
        assert parts[:-1] == [{}, {}] and parts[-1] == whole
