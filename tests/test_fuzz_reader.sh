#!/usr/bin/env bash
# test_fuzz_reader.sh - a short libFuzzer run of libtally's reply reader (tests/fuzz_reader.c):
# every input is read in pieces and whole, and both must agree. Built with clang's fuzzer,
# AddressSanitizer and UBSan; any crash, leak, disagreement or sanitizer report fails the test.
# Skips (77) where clang or its fuzzer runtime is missing. See fuzz_lib.sh.
set -eu -o pipefail
. "$(dirname "$0")/fuzz_lib.sh"
fuzz_build fuzz_reader -I"$fuzz_src/client" -I"$fuzz_src/tests" "$fuzz_src/tests/fuzz_reader.c" \
    "$fuzz_src"/client/*.c -lm
fuzz_run fuzz_reader "$fuzz_src/tests/fuzz_reader_corpus"
