"""Multi-speaker pretraining of the acoustic model (single process or DDP under torchrun)."""
