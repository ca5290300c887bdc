from clipf.evaluate.cli import cli

raise SystemExit(cli())
