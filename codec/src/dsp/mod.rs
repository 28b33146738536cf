//! Signal processing: windows, STFT / inverse STFT, mel filterbanks and log-mel features.
