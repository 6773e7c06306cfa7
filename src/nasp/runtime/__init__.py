"""Runtime helpers at the bottom of the house: device and precision, torch.distributed, the run
directory, atomic writes and optional extras."""
