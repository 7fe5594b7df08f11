"""The LightningModule: loss, metrics and optimiser of a classifier, nothing else."""

from __future__ import annotations

import contextlib
import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from galaxymorph.data.transforms import to_float
from galaxymorph.models.network import GalaxyNet


class ClassifierModule(L.LightningModule):
    def __init__(self, net: GalaxyNet, num_classes: int, lr: float = 1e-3,
                 weight_decay: float = 1e-4, class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, transfer: str = "full",
                 backbone_lr_mult: float = 0.1, scheduler: str = "cosine",
                 warmup_epochs: int = 0, logit_adjustment: torch.Tensor | None = None,
                 channels_last: bool = True, noise_groups: int = 0,
                 noise_lr_mult: float = 10.0, consistency_weight: float = 1.0,
                 consistency_threshold: float = 0.95):
        super().__init__()
        # Channels-last: oneDNN's convolutions run about twice as fast on CPU in this layout
        # (benchmarks/bench_training.py); the numbers are the same to float rounding.
        self.channels_last = channels_last
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.num_classes = num_classes
        self.lr, self.weight_decay = lr, weight_decay
        self.label_smoothing = label_smoothing
        self.transfer, self.backbone_lr_mult = transfer, backbone_lr_mult
        self.scheduler_name, self.warmup_epochs = scheduler, warmup_epochs
        self.register_buffer("class_weights", class_weights if class_weights is not None
                             else torch.ones(num_classes))
        # tau * log(prior), added to the logits in the training loss only: the network then
        # learns logits for a balanced prior, instead of taking the training mix as truth.
        self.register_buffer("logit_adjustment", logit_adjustment if logit_adjustment is not None
                             else torch.zeros(num_classes), persistent=False)
        # One class-transition matrix per noisy-label source (T[g][true, observed] = softmax of
        # a row), starting near the identity (0.9 on the diagonal): the loss of its images is
        # that of softmax(logits) @ T, and the network's head is left to the clean sources.
        # Only runs with noisy sources carry the parameter: other checkpoints keep their keys.
        self.noise_groups, self.noise_lr_mult = noise_groups, noise_lr_mult
        diag = math.log(0.9 * (num_classes - 1) / 0.1) if num_classes > 1 else 0.0
        self.transition_logits = torch.nn.Parameter(
            torch.eye(num_classes).repeat(noise_groups, 1, 1) * diag) if noise_groups else None
        self.consistency_weight, self.consistency_threshold = consistency_weight, consistency_threshold
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_float(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits + self.logit_adjustment, y, weight=self.class_weights,
                               label_smoothing=self.label_smoothing, reduction=reduction)

    def transitions(self) -> torch.Tensor:
        """The learned transition matrices, (groups, C, C), rows summing to 1."""
        if self.transition_logits is None:
            return torch.zeros(0, self.num_classes, self.num_classes)
        return torch.softmax(self.transition_logits, dim=-1)

    def _noisy_loss(self, logits: torch.Tensor, y: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Clean images: the usual loss; a noisy source's: NLL of softmax(logits) @ T[group]."""
        clean = self._loss(logits, y, reduction="none")
        p = torch.softmax(logits + self.logit_adjustment, dim=1)
        t = self.transitions()[(group - 1).clamp(min=0)]  # (B, C, C)
        observed = torch.bmm(p.unsqueeze(1), t).squeeze(1).clamp_min(1e-8)
        noisy = F.nll_loss(observed.log(), y, weight=self.class_weights, reduction="none")
        per_image = torch.where(group > 0, noisy, clean)
        return per_image.sum() / self.class_weights[y].sum()

    def _consistency_loss(self, x_weak: torch.Tensor, strong_logits: torch.Tensor) -> torch.Tensor:
        """FixMatch's unlabelled loss: cross-entropy of the strong views' logits against the weak
        views' answers, counting only answers at least ``consistency_threshold`` confident
        (averaged over the whole unlabelled batch, so few confident answers weigh little)."""
        with torch.no_grad(), norm_stats_kept(self.net):
            p = torch.softmax(self(x_weak), dim=1)
            confidence, target = p.max(dim=1)
            mask = (confidence >= self.consistency_threshold).float()
        loss = (F.cross_entropy(strong_logits, target, reduction="none") * mask).mean()
        self.log("unlabelled_used", mask.mean(), on_step=False, on_epoch=True)
        self.log("unlabelled_loss", loss, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        unlabelled = None
        if isinstance(batch, dict):  # consistency training: {"labelled": ..., "unlabelled": ...}
            batch, unlabelled = batch["labelled"], batch["unlabelled"]
        x, y = batch
        if unlabelled is None:
            logits = self(x)
        else:
            x_weak, x_strong = unlabelled
            logits = self(x)
            # The strong views are normalised by their own batch statistics but do not enter the
            # running ones: heavily degraded images would otherwise shift the statistics the
            # network is evaluated with (an informal check: GZ1 validation accuracy 0.747 with
            # them, 0.785 with the statistics re-estimated on labelled images alone).
            with norm_stats_kept(self.net):
                strong_logits = self(x_strong)
        if self.noise_groups:
            from galaxymorph.training.datamodule import decode_noise_group

            y, group = decode_noise_group(y, self.num_classes)
            loss = self._noisy_loss(logits, y, group)
        else:
            loss = self._loss(logits, y)
        if unlabelled is not None:
            loss = loss + self.consistency_weight * self._consistency_loss(x_weak, strong_logits)
        # Batch accuracy on the progress bar (the seed logged it per batch), epoch mean in logs.
        batch_acc = (logits.argmax(1) == y).float().mean()
        self.log("batch_acc", batch_acc, on_step=True, on_epoch=False, prog_bar=True)
        self.train_acc(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=False)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        # Unweighted loss for early stopping: comparable across imbalance options.
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val_f1_macro", self.val_f1, on_epoch=True, prog_bar=True)

    def on_train_epoch_start(self) -> None:
        from galaxymorph.models.transfer import freeze_norm_stats

        # A frozen backbone's BatchNorm statistics must not drift towards a few hundred images.
        freeze_norm_stats(self.net)

    def on_train_start(self) -> None:
        # A resumed run's optimiser comes back with the learning rate it ended on (0 at the end
        # of a finished schedule): put it on the (possibly rebuilt) schedule now, not an epoch late.
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs,
                                           sched.lr_lambdas, strict=True):
                    group["lr"] = base * fn(sched.last_epoch)

    def configure_optimizers(self):
        from galaxymorph.models.ensemble import members_of
        from galaxymorph.models.transfer import param_groups

        # An ensemble (fine-tuned as a whole) gets each member's groups under the same policy.
        groups = [g for member in members_of(self.net)
                  for g in param_groups(member.backbone, self.transfer, self.lr, self.backbone_lr_mult)]
        if self.noise_groups:
            groups.append({"params": [self.transition_logits], "lr": self.lr * self.noise_lr_mult,
                           "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler_name == "none":
            return opt
        # The factor is computed from the trainer's *current* length at every step (not stored in
        # the checkpoint), so `--resume --epochs N` really trains the added epochs on a schedule
        # rebuilt for N instead of continuing a finished cosine at learning rate 0.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: schedule_factor(
            epoch, max(1, self.trainer.max_epochs or 1), self.warmup_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


@contextlib.contextmanager
def norm_stats_kept(net: torch.nn.Module):
    """Forward passes inside leave every BatchNorm's running statistics as they were."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None
              else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def schedule_factor(epoch: int, epochs: int, warmup_epochs: int = 0) -> float:
    """Learning-rate multiplier at ``epoch`` of ``epochs``: linear warm-up from 0.1, then cosine to 0."""
    if epoch < warmup_epochs:
        return 0.1 + 0.9 * epoch / warmup_epochs
    span = max(1, epochs - warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup_epochs, span) / span))


class QuestionModule(ClassifierModule):
    """A decision-tree model: one softmax per question of ``schema`` over the network's
    answer outputs, trained on vote fractions (:func:`galaxymorph.models.tree.question_loss`).
    Optimiser, schedule and transfer policy are the classifier's."""

    def __init__(self, net: GalaxyNet, schema, noise_groups: int = 0, **kwargs):
        kwargs.pop("class_weights", None)
        kwargs.pop("logit_adjustment", None)
        super().__init__(net, schema.n_answers, **kwargs)
        self.schema = schema
        # A noisy source (GZ1's majority labels beside GZ2's vote fractions) gets, per question,
        # a learned answer-transition matrix (near the identity at first): its targets are
        # compared with p @ T, so the network's own answers follow the vote fractions. Stored
        # padded, (groups, questions, K, K) for the largest K, as one parameter.
        self.noise_groups = noise_groups
        if noise_groups:
            k = max(len(q.answers) for q in schema.questions)
            init = torch.zeros(noise_groups, schema.n_questions, k, k)
            for qi, q in enumerate(schema.questions):
                n = len(q.answers)
                init[:, qi, :n, :n] = torch.eye(n) * math.log(0.9 * (n - 1) / 0.1)
            self.transition_logits = torch.nn.Parameter(init)

    def question_transitions(self) -> list[torch.Tensor]:
        """Per question, the learned matrices ``(groups, K, K)`` (rows sum to 1)."""
        return [torch.softmax(self.transition_logits[:, qi, :len(q.answers), :len(q.answers)], dim=-1)
                for qi, q in enumerate(self.schema.questions)]

    def _tree_loss(self, logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
        from galaxymorph.models.tree import question_loss

        width = self.schema.n_answers + self.schema.n_questions
        if not self.noise_groups or targets.shape[1] == width:
            return question_loss(logits, targets, self.schema, label_smoothing=smoothing)
        group = targets[:, width].long()  # the training fold's rows carry their source's group
        per_question = []
        for q, t in zip(self.schema.questions, self.question_transitions(), strict=True):
            eye = torch.eye(len(q.answers), device=t.device)
            stacked = torch.cat([eye.unsqueeze(0), t])  # group 0: clean, the identity
            per_question.append(stacked[group])
        return question_loss(logits, targets, self.schema, label_smoothing=smoothing,
                             transitions=per_question)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, targets = batch
        loss = self._tree_loss(self(x), targets, self.label_smoothing)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=False)
        self.log("batch_loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, targets = batch
        logits = self(x)
        self.log("val_loss", self._tree_loss(logits, targets, 0.0), on_epoch=True, prog_bar=True)
        # How far the predicted fractions are from the volunteers', where they answered.
        a = self.schema.n_answers
        probs = torch.cat([torch.softmax(logits[:, sl], dim=1) for sl in self.schema.slices], dim=1)
        answered = (targets[:, a:] > 0)[:, torch.as_tensor(self.schema.question_of_answer())]
        err = ((probs - targets[:, :a]) ** 2)[answered]
        if err.numel():
            self.log("val_vote_rmse", err.mean().sqrt(), on_epoch=True, prog_bar=True)
