"""What the lecture examples share: full-batch serving, a binary classifier's steps, the data's errors (the command
line and the report: lecture/command_line.py)."""
import pytorch_lightning as pl

import manual_bp.functional as MF
from models.callbacks import metric_tag
from models.data import DataSplitError
from models.idx import DataFileError, DataNotFoundError

DATA_ERRORS = (DataNotFoundError, DataFileError, DataSplitError)  # the data folder's own one-line errors


def data_error_line(error):
    """One of DATA_ERRORS with the option that mends it, as train.py says it."""
    if isinstance(error, DataSplitError):
        return f"{error} (give a smaller one with --val_size)"
    return f"{error} (give the folder with --data_dir)"


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
