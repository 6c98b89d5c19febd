#!/usr/bin/env bash
# test_client_install.sh - libtally as its users get it: `make install` into a staging
# directory (DESTDIR), then both examples in client/examples/ built with their own Makefile
# against the staged tree through pkg-config (PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR), one
# of them also against the static library, and run against a tallyd on a free port.
# Fails when the install, the installed files, pkg-config's answer, a build or a run is wrong.
# Environment: TALLY_BUILDDIR (the build tree; default .), TALLY_SRCDIR, TALLY_SAN_FLAGS (the
# sanitizer flags the library was built with: the examples need them too), TALLYD, CC.
set -eu -o pipefail
src=${TALLY_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${TALLY_BUILDDIR:-$(pwd)}
san=${TALLY_SAN_FLAGS:-}
for tool in pkg-config redis-cli; do
    if ! command -v $tool >/dev/null; then
        echo "SKIP: $tool is not installed (apt-get install pkg-config redis-tools)"
        exit 77
    fi
done
# shellcheck source=tests/server_lib.sh
. "$(dirname "$0")/server_lib.sh"
server_init client-install
stage=$tmp/stage

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# A make of our own, not the jobserver of the make check that runs us.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$build" install DESTDIR="$stage" \
    >"$tmp/install.log" 2>&1; then
    tail -n 30 "$tmp/install.log" >&2
    fail "make install DESTDIR=$stage failed in $build"
fi

pc=$(find "$stage" -name tally.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "make install put no pkgconfig/tally.pc under $stage"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
for f in "$libdir/libtally.so" "$libdir/libtally.a"; do
    [ -e "$f" ] || fail "make install did not install $f"
done
[ -n "$(find "$stage" -name tally.h -path '*/include/*')" ] || fail "tally.h is not installed"
[ -n "$(find "$stage" -name libtally.3 -path '*/man3/*')" ] || fail "libtally.3 is not installed"
if grep -q 'tallystore' "$(find "$stage" -name tally.h -path '*/include/*')"; then
    fail "the installed tally.h refers to the engine"
fi

# pkg-config against the staged tree only.
export PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_SYSROOT_DIR=$stage
flags=$(pkg-config --cflags --libs tally) || fail "pkg-config --cflags --libs tally failed"
echo "pkg-config --cflags --libs tally: $flags"
case "$flags" in
*"-I$stage/"*"-L$stage/"*"-ltally"* | *"-L$stage/"*"-ltally"*) ;;
*) fail "pkg-config's flags do not point into the staged tree: $flags" ;;
esac

# The examples, with their own Makefile, as a user would build them.
cp -r "$src/client/examples" "$tmp/examples"
chmod -R u+w "$tmp/examples"
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$tmp/examples" \
    CC="${CC:-cc}" CFLAGS="-O2 -g -Wall -Wextra -Werror $san" LDFLAGS="$san" \
    >"$tmp/examples.log" 2>&1; then
    cat "$tmp/examples.log" >&2
    fail "the examples do not build against the installed library"
fi
readelf -d "$tmp/examples/rate_limiter" | grep -q 'NEEDED.*libtally\.so' ||
    fail "rate_limiter is not linked against libtally.so"
# The static library on its own.
# shellcheck disable=SC2046,SC2086
"${CC:-cc}" -O2 $san $(pkg-config --cflags tally) -o "$tmp/examples/windowed_counter_static" \
    "$tmp/examples/windowed_counter.c" "$libdir/libtally.a" -lm ||
    fail "windowed_counter does not link against libtally.a"

server_start
export LD_LIBRARY_PATH=$libdir
for ex in rate_limiter windowed_counter windowed_counter_static; do
    echo "== $ex"
    "$tmp/examples/$ex" 127.0.0.1 "$port" || fail "$ex failed against tallyd on port $port"
done
server_stop || fail "tallyd exited with status $server_stop_rc"
echo "install, pkg-config, examples: all passed"
