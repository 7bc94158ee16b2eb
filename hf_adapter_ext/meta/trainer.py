"""`SemiSupervisedMetaTrainer`: episodic meta-training of SIB with the `transformers.Trainer` machinery.

Datasets can be plain labelled `datasets.Dataset`s (``text`` + ``label`` for intents; ``tokens`` + IO
``tags`` for NER): the trainer encodes them once with the frozen backbone and samples episodes from the
cached features. Ready-made episode datasets (`SequenceEpisodes`, `TokenEpisodes`) are used as they are.
Batches of episodes flow through ``compute_loss`` / ``prediction_step`` like any Trainer batch, so
gradient accumulation, checkpoints, logging and `accelerate launch` work unchanged.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset as TorchDataset
from transformers import Trainer

from .arguments import MetaTrainingArguments
from .baselines import prototype_logits, soft_kmeans_logits
from .episodes import (
    EpisodeSampler,
    SequenceEpisodes,
    TextEpisodes,
    TokenEpisodes,
    TokenEpisodeSampler,
    collate_episodes,
)
from .evaluation import episode_accuracy, episode_entity_counts, f1_from_counts, mean_ci95
from .features import encode_texts, encode_words


class SemiSupervisedMetaTrainer(Trainer):
    def __init__(self, model, args: MetaTrainingArguments, train_dataset=None, eval_dataset=None,
                 processing_class=None, text_column: str = "text", label_column: str = "label",
                 tokens_column: str = "tokens", tags_column: str = "tags", **kwargs):
        if not isinstance(args, MetaTrainingArguments):
            raise ValueError("SemiSupervisedMetaTrainer needs MetaTrainingArguments (n_way, k_shot, n_query, ...).")
        if args.n_way != model.config.n_way:
            raise ValueError(f"args.n_way={args.n_way} but the model was built for n_way={model.config.n_way}.")
        if args.inner_steps is not None:
            model.config.inner_steps = args.inner_steps
        if args.inner_lr is not None:
            model.config.inner_lr = args.inner_lr
            model.head.log_inner_lr.data.fill_(math.log(args.inner_lr))
        args.label_names = ["query_labels"]
        self.columns = {"text": text_column, "label": label_column, "tokens": tokens_column, "tags": tags_column}
        self.tokenizer_for_episodes = processing_class
        self.meta_model, self.meta_args = model, args
        train = self.episodes_for(train_dataset, args.seed, args.train_episodes, "train")
        evaluation = self.episodes_for(eval_dataset, args.eval_seed, args.num_eval_episodes, "eval")
        kwargs.setdefault("data_collator", collate_episodes)
        super().__init__(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                         processing_class=processing_class, **kwargs)
        self.seen_episodes: list[int] = []

    # ------------------------------------------------------------------ episodes
    def episodes_for(self, data, seed: int, num_episodes: int, name: str):
        """Episodes over a labelled dataset (features cached once), or ``data`` itself if already episodes."""
        if data is None or isinstance(data, TorchDataset):
            return data
        if len(data) == 0:
            raise ValueError(f"The {name} dataset is empty.")
        model, args, cols = self.meta_model, self.meta_args, self.columns
        if self.tokenizer_for_episodes is None:
            raise ValueError("Pass processing_class=<the backbone's tokenizer> so the trainer can encode the texts.")
        if model.config.level == "token":
            tags = self._string_tags(data)
            types = sorted({t for sentence in tags for t in sentence if t != "O"})
            sampler = TokenEpisodeSampler(tags, types, args.n_way, args.k_shot, seed)
            features = encode_words(model, self.tokenizer_for_episodes, data[cols["tokens"]], desc=f"Encoding {name}")
            return TokenEpisodes(features, sampler, num_episodes)
        labels = list(data[cols["label"]])
        names = getattr(data.features.get(cols["label"]), "names", None)
        sampler = EpisodeSampler(labels, sorted(set(labels)), args.n_way, args.k_shot, args.n_query, seed, names)
        if not model.config.freeze_backbone:
            return TextEpisodes(list(data[cols["text"]]), self.tokenizer_for_episodes, sampler, num_episodes)
        features = encode_texts(model, self.tokenizer_for_episodes, data[cols["text"]], desc=f"Encoding {name}")
        return SequenceEpisodes(features, sampler, num_episodes)

    def _string_tags(self, data) -> list[list[str]]:
        column = self.columns["tags"]
        feature = data.features[column]
        names = getattr(getattr(feature, "feature", None), "names", None)
        return [[names[t] for t in tags] if names else list(tags) for tags in data[column]]

    # ------------------------------------------------------------------ training
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:  # prediction_step calls compute_loss too
            self.seen_episodes.extend(inputs["episode_index"].tolist())
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Scores over evaluation episodes with 95% CIs: SIB after K steps, SIB with K = 0, prototypes and
        soft k-means on the same features (accuracy at sequence level, episode entity F1 at token level)."""
        episodes = self.episodes_for(eval_dataset, self.meta_args.eval_seed, self.meta_args.num_eval_episodes, "eval") \
            if eval_dataset is not None else self.eval_dataset
        if episodes is None:
            raise ValueError("evaluate() needs an eval_dataset.")
        model, args = self.model, self.meta_args
        model.eval()
        token_level = self.meta_model.config.level == "token"
        scores: dict[str, list[torch.Tensor]] = {}
        losses = []
        for batch in self.get_eval_dataloader(episodes):
            batch = self._prepare_inputs(batch)
            loss, (logits, logits_init), labels = self.prediction_step(model, batch, prediction_loss_only=False,
                                                                       ignore_keys=ignore_keys)
            methods = {"sib": logits, "sib_k0": logits_init}
            if "support_features" in batch:
                C = self.meta_model.config.num_classes
                s, y, q = batch["support_features"], batch["support_labels"], batch["query_features"]
                methods["proto"] = prototype_logits(s, y, q, C)
                methods["soft_kmeans"] = soft_kmeans_logits(
                    s, y, q, C, query_mask=labels != -100, temperature=args.soft_kmeans_temperature,
                    iterations=args.soft_kmeans_iterations)
            for method, method_logits in methods.items():
                if token_level:
                    value = episode_entity_counts(method_logits.argmax(-1).cpu(), labels.cpu(),
                                                  batch["query_sentence_lengths"].cpu())
                else:
                    value = episode_accuracy(method_logits, labels).cpu()
                scores.setdefault(method, []).append(self.accelerator.gather_for_metrics(value.to(logits.device)).cpu())
            losses.append(self.accelerator.gather_for_metrics(loss.detach().reshape(1)).cpu())
        metrics = {f"{metric_key_prefix}_loss": float(torch.cat(losses).mean()),
                   f"{metric_key_prefix}_episodes": int(sum(len(v) for v in scores["sib"]))}
        for method, values in scores.items():
            values = torch.cat(values)
            if token_level:
                mean, ci = mean_ci95(f1_from_counts(values))
                metrics[f"{metric_key_prefix}_{method}_f1"], metrics[f"{metric_key_prefix}_{method}_f1_ci95"] = mean, ci
                metrics[f"{metric_key_prefix}_{method}_micro_f1"] = float(f1_from_counts(values.sum(0)))
            else:
                mean, ci = mean_ci95(values)
                metrics[f"{metric_key_prefix}_{method}_accuracy"] = mean
                metrics[f"{metric_key_prefix}_{method}_accuracy_ci95"] = ci
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
