"""The bodies of CLI subcommands that are not library calls: predict, export, fetch, slurm, report, push,
data stats. Only `spanqa.cli` imports them."""
