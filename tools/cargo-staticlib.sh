#!/bin/sh
# Called by meson: cargo build of the staticlib, copied to meson's output.
# usage: cargo-staticlib.sh CARGO SRCDIR TARGETDIR PROFILE OUTDIR OUTPUT [FEATURES]
# FEATURES: the ABI's cargo feature (abi-24-11, abi-25-11), empty for 22.11.
set -eu
cargo=$1 src=$2 target=$3 profile=$4 outdir=$5 output=$6 features=${7:-}
"$cargo" build --manifest-path "$src/Cargo.toml" --lib --profile "$profile" --target-dir "$target" --quiet \
    ${features:+--features "$features"}
cp "$target/$outdir/librvhost.a" "$output"
