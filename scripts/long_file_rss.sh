#!/bin/bash
# Peak resident memory of `tessera encode` and `tessera decode` on a long file, to check that
# memory does not grow with the length of the audio (docs/codecs/*.md, "Long files").
#
#   scripts/long_file_rss.sh CODEC_DIR_OR_ID MINUTES [WORKDIR]
#
# Writes WORKDIR/a<MINUTES>.wav (24 kHz mono 16-bit pink noise with a 3 Hz tremolo, made with
# sox, kept for reuse; never commit it), encodes it with the release CLI and decodes the codes
# again (noise off), each under /usr/bin/time -v. Prints one line: peak RSS in kB and wall time
# of each step. ENCODE_ONLY=1 skips the decode; TESSERA_BIN runs another build of the CLI (a copy,
# so that rebuilding during an hour-long run does not change it). Build first:
# cargo build --release -p tessera-cli.
set -euo pipefail
codec=$1
minutes=$2
work=${3:-/tmp/tessera-rss}
bin=${TESSERA_BIN:-$(dirname "$0")/../target/release/tessera}
mkdir -p "$work"
audio=$work/a$minutes.wav
[ -f "$audio" ] || sox -n -r 24000 -c 1 -b 16 "$audio" synth $((minutes * 60)) pinknoise tremolo 3 60 vol 0.5
tag=$(basename "$codec")_${minutes}m
/usr/bin/time -v "$bin" -q encode "$audio" --codec "$codec" -o "$work/$tag.safetensors" --json \
  > "$work/$tag.enc.json" 2> "$work/$tag.enc.time"
field() { grep "$1" "$2" | awk -F': ' '{print $2}'; }
if [ "${ENCODE_ONLY:-0}" = 1 ]; then
  echo "$tag encode: peak_rss_kB=$(field 'Maximum resident' "$work/$tag.enc.time")" \
    "wall=$(field 'Elapsed' "$work/$tag.enc.time")"
  exit 0
fi
/usr/bin/time -v "$bin" -q decode "$work/$tag.safetensors" --codec "$codec" -o "$work/$tag.wav" \
  --no-noise --json > "$work/$tag.dec.json" 2> "$work/$tag.dec.time"
echo "$tag encode: peak_rss_kB=$(field 'Maximum resident' "$work/$tag.enc.time")" \
  "wall=$(field 'Elapsed' "$work/$tag.enc.time")" \
  "decode: peak_rss_kB=$(field 'Maximum resident' "$work/$tag.dec.time")" \
  "wall=$(field 'Elapsed' "$work/$tag.dec.time")"
rm -f "$work/$tag.wav"
