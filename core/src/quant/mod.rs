//! Quantizers: vector quantizer, residual VQ, FSQ and LFQ, on candle tensors.
