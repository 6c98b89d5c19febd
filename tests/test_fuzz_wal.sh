#!/usr/bin/env bash
# test_fuzz_wal.sh - a short libFuzzer run of WAL replay (tests/fuzz_wal.c): a segment whose
# bytes are the input replayed as an older and as the last segment, as it is and with its
# checksums repaired. Seeds: tests/fuzz_wal_corpus (segments written by the engine, whole, torn
# and corrupt). See fuzz_lib.sh.
set -eu -o pipefail
. "$(dirname "$0")/fuzz_lib.sh"
fuzz_build_engine fuzz_wal wal crc32c error record uring_io
fuzz_run fuzz_wal "$fuzz_src/tests/fuzz_wal_corpus"
