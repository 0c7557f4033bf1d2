"""Reader models: any Hugging Face encoder with a span head, and where to find their weights."""
