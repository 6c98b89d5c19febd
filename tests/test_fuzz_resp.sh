#!/usr/bin/env bash
# test_fuzz_resp.sh - a short libFuzzer run of the RESP request parser (tests/fuzz_resp.c),
# built with clang's fuzzer, AddressSanitizer and UBSan. Any crash, leak or sanitizer report
# fails the test. Skips (77) where clang or its fuzzer runtime is missing. See fuzz_lib.sh.
set -eu -o pipefail
. "$(dirname "$0")/fuzz_lib.sh"
fuzz_build fuzz_resp -I"$fuzz_src/server" -I"$fuzz_src/storage" "$fuzz_src/tests/fuzz_resp.c" \
    "$fuzz_src/server/resp.c" "$fuzz_src/server/buf.c"
fuzz_run fuzz_resp "$fuzz_src/tests/fuzz_resp_corpus"
