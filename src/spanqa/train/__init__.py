"""The training engine: `engine.fit` runs any task's `Task` (loop, optimisers, schedules, checkpoints,
resume, pre-emption, outputs). It imports nothing QA-specific; the tasks live in `spanqa.tasks`."""
