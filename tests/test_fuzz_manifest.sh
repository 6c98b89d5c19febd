#!/usr/bin/env bash
# test_fuzz_manifest.sh - a short libFuzzer run of the manifest reader (tests/fuzz_manifest.c):
# the input read as a manifest by tallyctl's reader and by the engine's open (then reopened),
# as it is and with its checksums repaired, and as CURRENT. Seeds: tests/fuzz_manifest_corpus
# (manifests written by the engine, whole, torn and corrupt, and a CURRENT). See fuzz_lib.sh.
set -eu -o pipefail
. "$(dirname "$0")/fuzz_lib.sh"
fuzz_build_engine fuzz_manifest manifest crc32c error uring_io
fuzz_run fuzz_manifest "$fuzz_src/tests/fuzz_manifest_corpus"
