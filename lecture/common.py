"""What the lecture examples share: full-batch serving, a binary classifier's steps, and how a run reports."""
from pathlib import Path

import pytorch_lightning as pl

import manual_bp.functional as MF
from models.callbacks import metric_tag


class RepeatedBatch:
    """One whole data set as one batch, served `times` times per epoch (full-batch gradient descent)."""

    def __init__(self, batch, times=1):
        self.batch, self.times = batch, times

    def __len__(self):
        return self.times

    def __iter__(self):
        for _ in range(self.times):
            yield self.batch


class BinaryClassifier(pl.LightningModule):
    """Binary cross-entropy on `probability(inputs)` (the model's ŷ = P(y = 1)), logging loss and accuracy."""

    def probability(self, inputs):
        raise NotImplementedError

    def _common_step(self, batch, stage):
        inputs, targets = batch
        probability = self.probability(inputs)
        loss = MF.binary_cross_entropy(probability, targets)
        # the tags of every run in this project (models/callbacks.py): loss/train, acc/val, ..., steps/loss
        self.log(metric_tag("loss", stage), loss, on_step=False, on_epoch=True)
        self.log(metric_tag("acc", stage), ((probability > 0.5).float() == targets).float().mean(), on_step=False,
                 on_epoch=True, prog_bar=stage == "val")
        if stage == "train":
            self.log("steps/loss", loss, on_step=True, on_epoch=False)
        return loss

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._common_step(batch, "val")


def report(figure, out, verdict_lines, where=""):
    """Save the figure as a PNG at `out` (its folder made), then print the verdict lines and where the figure is."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    for line in verdict_lines:
        print(line)
    print(f"figure: {out}{where}")
