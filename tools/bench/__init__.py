"""Speed: latency and frames per second of each backend, the pipeline, and the peer side by side
(benchmark)."""
