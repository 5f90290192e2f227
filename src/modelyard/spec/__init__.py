"""The leaf every layer shares: what a model is (`config`) and what generating text means
(`generation`). Nothing here imports another modelyard package but `errors` and `tensors`."""
