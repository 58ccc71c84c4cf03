"""The scalars written on some training steps: which steps, and how they reach the loggers."""


def on_interval(step, every):
    """Whether the optimizer step `step` (0-based; global_step before the step, global_step − 1 after it) is one of
    every `every`: steps every − 1, 2·every − 1, ...; none when `every` is 0."""
    return every > 0 and (step + 1) % every == 0


def write_scalars(trainer, scalars, step):
    """{tag: value} at `step`, handed by rank 0 to each of the trainer's loggers (Lightning's Logger.log_metrics).

    NOTE: for values logged on some steps, not LightningModule.log, whose bookkeeping (a torchmetrics state per
    value, moved to the device and updated on every call, then collected for the loggers) costs about 1 ms a call
    on the CPU, nearly half a small network's step (docs/benchmarks.md). Each logger reads a tensor value from
    the device: on a GPU, a host wait on that step.
    """
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step)
