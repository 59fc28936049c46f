#!/bin/sh
# Prints the version of this source tree in a form that is valid both for Go
# binaries and as a Debian upstream version (it starts with a digit):
#   tag v1.2.3                      -> 1.2.3
#   3 commits after it              -> 1.2.3+3.gabc1234
#   no tag yet                      -> 0.0.0~git20261125.abc1234
#   uncommitted changes             -> the above plus "+dirty" (or ".dirty")
#   not a git checkout              -> 0.0.0~unknown
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	echo "0.0.0~unknown"
	exit 0
fi
if v=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	v=$(echo "$v" | sed -e 's/^v//' -e 's/-\([0-9][0-9]*\)-g\([0-9a-f]*\)$/+\1.g\2/')
else
	v="0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=12 HEAD)"
fi
if ! git diff --quiet HEAD -- 2>/dev/null; then
	case "$v" in
	*+*) v="$v.dirty" ;;
	*) v="$v+dirty" ;;
	esac
fi
echo "$v"
