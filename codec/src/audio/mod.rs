//! Audio in and out: decoding with symphonia, resampling with rubato, writing WAV with hound.
