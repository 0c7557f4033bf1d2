"""Training: the loop, optimisers, schedules, checkpoints and what a finished run writes."""
