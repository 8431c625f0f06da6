#!/usr/bin/env bash
# Offline RustSec advisory database for `cargo deny --offline` (CI has no internet).
#
# When ../shared/advisory-db (a plain copy of the database, no .git) exists, this makes a git
# checkout of it where cargo-deny looks for its default database,
# `<db-path>/advisory-db-3157b0e258782691`, committed once and dated as its SNAPSHOT file says
# (cargo-deny reads the database's date from the last commit), and prints the db-path.
# deny.toml reads that path from CALLSEC_ADVISORY_DBS; xtask runs `cargo deny --offline`
# when it is set and the live database otherwise. Prints nothing when there is no copy.
#
# Use: export CALLSEC_ADVISORY_DBS="$(.ci/advisory-db.sh)"
set -euo pipefail
# The copy sits in the workspace's shared folder: beside this checkout, or in /work/shared for a
# clone made elsewhere (CI clones main into a fresh directory).
src="${1:-}"
if [ -z "$src" ]; then
    for candidate in "$(cd "$(dirname "$0")/../.." && pwd)/shared/advisory-db" /work/shared/advisory-db; do
        if [ -d "$candidate" ]; then
            src="$candidate"
            break
        fi
    done
fi
[ -n "$src" ] && [ -d "$src" ] || exit 0
read -r commit date < "$src/SNAPSHOT"
root="$(mktemp -d "${TMPDIR:-/tmp}/callsec-advisory-dbs.XXXXXX")"
db="$root/advisory-db-3157b0e258782691"
mkdir "$db"
cp -R "$src/." "$db/"
stamp="${date}T00:00:00Z"
(
    cd "$db"
    git init -q -b main
    git add -A
    GIT_AUTHOR_NAME=advisory-db GIT_AUTHOR_EMAIL=advisory-db@localhost \
    GIT_COMMITTER_NAME=advisory-db GIT_COMMITTER_EMAIL=advisory-db@localhost \
    GIT_AUTHOR_DATE="$stamp" GIT_COMMITTER_DATE="$stamp" \
        git commit -q -m "RustSec advisory-db snapshot $commit ($date)"
) >&2
echo "$root"
