"""Files: checkpoints (orbax), offline datasets (our JSON lines and the reference's pickle) and run logs."""
