#!/bin/sh
# keeldns launcher: starts @PROGRAM@ (the Deno runtime with the bundled program, or the compiled
# executable) through the glibc loader shipped beside it in @LIBDIR@/glibc, so it runs where the
# system has no glibc (stock OpenWrt is musl) and the same way everywhere else.
# KEELDNS_SYSTEM_GLIBC=1 runs it on the system's own glibc instead.
# The guardian starts every child the same way (ops/runtime_loader.ts reads these variables):
#   KEELDNS_LOADER, KEELDNS_LIBRARY_PATH  the loader and its library directory
#   KEELDNS_DENO                          the real program (under the loader, /proc/self/exe is ld.so)
LIBDIR=@LIBDIR@
KEELDNS_DENO="$LIBDIR/@PROGRAM@"
DENO_DIR="${KEELDNS_DENO_DIR:-/var/cache/keeldns/deno}"
DENO_NO_UPDATE_CHECK=1
export KEELDNS_DENO DENO_DIR DENO_NO_UPDATE_CHECK
set -- @ARGS@ "$@"
if [ "${KEELDNS_SYSTEM_GLIBC:-0}" != 1 ] && [ -x "$LIBDIR/glibc/@LOADER@" ]; then
  KEELDNS_LOADER="$LIBDIR/glibc/@LOADER@"
  KEELDNS_LIBRARY_PATH="$LIBDIR/glibc"
  export KEELDNS_LOADER KEELDNS_LIBRARY_PATH
  exec "$KEELDNS_LOADER" --library-path "$KEELDNS_LIBRARY_PATH" "$KEELDNS_DENO" "$@"
fi
unset KEELDNS_LOADER KEELDNS_LIBRARY_PATH
exec "$KEELDNS_DENO" "$@"
