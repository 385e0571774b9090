"""Training: `SegTrainer` and what it needs (callbacks, the optimizer's parameter groups,
checkpoints, device settings, CPU threads, the output folder's lock). Given explicit, resolved
values; it knows nothing of recipes or the command line."""
