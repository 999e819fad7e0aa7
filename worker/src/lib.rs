//! HybridLSTM training.
