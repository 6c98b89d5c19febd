#!/usr/bin/env bash
# test_fuzz_sst.sh - a short libFuzzer run of the SSTable reader (tests/fuzz_sst.c): verify,
# open, scans and lookups of a table whose bytes are the input, as it is and with its checksums
# repaired. Seeds: tests/fuzz_sst_corpus (tables written by the engine). See fuzz_lib.sh.
set -eu -o pipefail
. "$(dirname "$0")/fuzz_lib.sh"
fuzz_build_engine fuzz_sst sst_reader sst_builder block block_cache bloom compress crc32c error \
    record uring_io
fuzz_run fuzz_sst "$fuzz_src/tests/fuzz_sst_corpus"
