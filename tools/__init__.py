"""deeppose tools: dataset readers, training, evaluation, export and benchmarks."""
