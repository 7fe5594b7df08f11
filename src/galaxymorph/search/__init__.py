"""Similarity search: index folders of a model's embeddings (FAISS), the nearest galaxies of
query images, the odd ones first, and maps of a representation."""
