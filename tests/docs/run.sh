#!/usr/bin/env bash
# Builds the book (docs/, mdBook 0.4) and checks every internal link of docs/ and README.md
# (tests/run-all runs this). Installs mdBook with `cargo install` when it is missing (a few
# minutes, once; crates.io access needed); a second run takes a second. Fails on any warning
# or error of the build and on any broken link, naming the file, line and link.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

mdbook_version="0.4.52"
say() { printf -- '-- %s\n' "$*"; }

# Any mdBook 0.4 builds the book; when there is none, this one is installed.
mdbook=mdbook
if ! command -v mdbook >/dev/null || [[ "$(mdbook --version)" != "mdbook v0.4."* ]]; then
    say "installing mdBook $mdbook_version (cargo install, search only: no server, no file watcher)"
    cargo install mdbook --locked --version "$mdbook_version" --no-default-features --features search
    mdbook="${CARGO_HOME:-$HOME/.cargo}/bin/mdbook"
fi
"$mdbook" --version

say "building the book (mdbook build docs, into target/book)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$mdbook" build docs >"$log" 2>&1; then
    cat "$log" >&2
    echo "error: mdbook build failed" >&2
    exit 1
fi
if grep -E '\b(WARN|ERROR)\b' "$log" >&2; then
    echo "error: mdbook build warned (above); fix the book" >&2
    exit 1
fi

say "links: every relative link and #anchor of docs/ and README.md"
python3 "$here/check_links.py" --book-html target/book
