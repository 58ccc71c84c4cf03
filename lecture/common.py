"""What the trainable lecture examples share: full-batch serving and a binary classifier's steps."""
import pytorch_lightning as pl

import manual_bp.functional as MF


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
        self.log(f"{stage}/loss", loss, prog_bar=True)
        self.log(f"{stage}/acc", ((probability > 0.5).float() == targets).float().mean(), prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._common_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._common_step(batch, "val")
