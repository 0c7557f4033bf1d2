"""What the Reader builds on: engine backends and the measured choice between them, answers ranked across
passages, and transformers-pipeline-style calls."""
