#!/bin/sh
# Pre-deploy validation: the stack's compose file is there and names an image.
# Usage: check-compose.sh FILE
file="$1"
[ -f "$file" ] || { echo "no compose file: $file" >&2; exit 1; }
grep -q "image:" "$file" || { echo "$file names no image" >&2; exit 1; }
echo "ok: $file"
