"""Training: one Lightning path for every classifier (config, data module, module, run folder)."""
