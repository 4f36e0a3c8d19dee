"""Scoring trained models: the ELBO in bits per dim and reconstructions (evaluate), the digit judge
(judge) and the sample-quality measures on its features (quality), the table of sampling settings
of one model (ablation), and model and cascade folders side by side (compare)."""
