#!/bin/sh
# Regenerate the seed corpora in corpus/ from real inputs on this machine.
# Run as root (the 3.13/3.14 seeds come from the chroot scripts/rootfs
# builds). The seeds are checked in; this is how they were made.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
c=$here/corpus
rootfs=${PYDI_ROOTFS:-/var/cache/pydi/forky}
mkdir -p "$c/linetable" "$c/procmaps" "$c/envattrs" "$c/elf" \
	"$c/debug_offsets" "$c/pycode"

# Real co_linetable bytes from Debian's python3 (3.11), each prefixed with
# its co_firstlineno (le32), as fuzz_linetable reads them; and one code
# object laid out as 3.11 memory for fuzz_pycode.
/usr/bin/python3 "$here/make_seeds.py" "$c"

# /proc/PID/maps of a real process (a shell: no secrets in its paths).
head -40 /proc/self/maps > "$c/procmaps/self_maps"

# An environ block shaped like a real service's (not this machine's: that
# could carry secrets).
printf 'PATH=/usr/local/bin:/usr/bin\0HOME=/app\0OTEL_SERVICE_NAME=checkout\0OTEL_RESOURCE_ATTRIBUTES=service.name=cart,deployment.environment.name=prod%%2Deu,team=a%%3Db\0AWS_LAMBDA_FUNCTION_NAME=x\0' \
	> "$c/envattrs/otel_env"
printf 'OTEL_RESOURCE_ATTRIBUTES=deployment.environment=staging,service.name=%%E2%%9C%%93ok\0AWS_APPLICATION_SIGNALS_ENABLED=true\0' \
	> "$c/envattrs/resource_attrs_only"

# A tiny real shared object, stripped and not.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'int _PyRuntime[4];\nint Py_Version = 0x030b02f0;\nint main(void) { return _PyRuntime[0]; }\n' > "$tmp/t.c"
cc -Os -shared -fPIC -nostdlib -Wl,--build-id -Wl,-z,noseparate-code -o "$c/elf/tiny.so" "$tmp/t.c"
cc -Os -shared -fPIC -nostdlib -s -Wl,-z,noseparate-code -o "$c/elf/tiny_stripped.so" "$tmp/t.c"

# The first PY_DEBUG_OFFSETS_MAX bytes of _PyRuntime (_Py_DebugOffsets),
# prefixed with the minor selector fuzz_debug_offsets reads (0: 3.13, 1: 3.14).
for minor in 13 14; do
	sel=$((minor - 13))
	chroot "$rootfs" /usr/bin/python3.$minor -c '
import ctypes, sys
rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
sys.stdout.buffer.write(bytes([int(sys.argv[1])]) + ctypes.string_at(rt, 1024))
' "$sel" > "$c/debug_offsets/python3.$minor"
done
