"""The files a run writes: rendering, the PNG encoder, the run index, figures."""
