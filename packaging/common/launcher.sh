#!/bin/sh
# keeldns launcher for the runtime build: the Deno runtime and the bundled program, side by side.
# The guardian re-executes the same runtime with --child for the serving child.
DENO_DIR="${KEELDNS_DENO_DIR:-/var/cache/keeldns/deno}"
DENO_NO_UPDATE_CHECK=1
export DENO_DIR DENO_NO_UPDATE_CHECK
exec @LIBDIR@/deno run --quiet --no-prompt --allow-net --allow-read --allow-write --allow-env --allow-sys \
  --allow-run --allow-ffi --unstable-net @LIBDIR@/keeldns.js "$@"
