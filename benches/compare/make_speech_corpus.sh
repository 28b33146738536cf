#!/usr/bin/env bash
# A speech corpus for the dataset throughput comparison: N clips of espeak-ng speech, 3-20 s
# each, in the mix of formats and rates a real dataset has (16 kHz FLAC, 22.05 kHz WAV,
# 44.1 kHz MP3). Deterministic: the same N gives the same files.
#
#   benches/compare/make_speech_corpus.sh OUT_DIR [N]
set -euo pipefail
out=${1:?usage: make_speech_corpus.sh OUT_DIR [N]}
n=${2:-120}
mkdir -p "$out"
words=(tokens codec audio speech model dataset shard resume train decode sample frame
       window attention stream quantizer residual codebook rate hour machine batch)
voices=(en en-us en-gb en-sc)
for ((i = 0; i < n; i++)); do
    # 8 to 55 words: about 3 to 20 seconds of speech.
    len=$((8 + (i * 37) % 48))
    text=""
    for ((w = 0; w < len; w++)); do
        text+="${words[$(((i * 7 + w * 13) % ${#words[@]}))]} "
    done
    voice=${voices[$((i % ${#voices[@]}))]}
    wav="$out/.tmp.wav"
    espeak-ng -v "$voice" -s $((140 + (i % 5) * 15)) -w "$wav" "$text"
    case $((i % 3)) in
        0) sox -q "$wav" -r 16000 "$out/clip$(printf %04d "$i").flac" ;;
        1) sox -q "$wav" -r 22050 "$out/clip$(printf %04d "$i").wav" ;;
        2) sox -q "$wav" -r 44100 -t wav - | ffmpeg -loglevel error -y -i - -b:a 128k \
               "$out/clip$(printf %04d "$i").mp3" ;;
    esac
done
rm -f "$out/.tmp.wav"
