"""One whole data set as one batch, served `times` times per epoch (full-batch gradient descent)."""


class RepeatedBatch:
    def __init__(self, batch, times=1):
        self.batch, self.times = batch, times

    def __len__(self):
        return self.times

    def __iter__(self):
        for _ in range(self.times):
            yield self.batch
