#!/bin/sh
# Pre-deploy validation: refuse to deploy when a directory the stack needs is missing.
# Usage: check-dir.sh DIR...
status=0
for dir in "$@"; do
    if [ -d "$dir" ]; then
        echo "ok: $dir exists"
    else
        echo "missing directory: $dir" >&2
        status=1
    fi
done
exit $status
