# The app's heap scenario (tests/mp32/app_heap.py) with the firmware package imported from a ROMFS
# image, as a box with a ROMFS partition runs it: mounted with vfs.VfsRom, /rom/lib first on
# sys.path, bytecode executed in place. Under the Unix port (the WebAssembly build has no VfsRom).
# The image itself sits in the heap here (a device maps it from flash): app_heap.py's baseline is
# taken after it is loaded, so it is not counted.
#
#   micropython tests/mp32/romfs_heap.py IMAGE KIT
import sys

import vfs

with open(sys.argv[1], "rb") as f:
    _image = f.read()
vfs.mount(vfs.VfsRom(_image), "/rom")
sys.path.insert(0, "/rom/lib")
import envbox.firmware  # noqa: E402

_fw = envbox.firmware.__file__
if not _fw.startswith("/rom/"):
    raise SystemExit("firmware imported from %s, not the ROMFS image" % _fw)
print("firmware_from=%s" % _fw)
_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.argv[:] = [sys.argv[0]] + sys.argv[2:]
with open(_here + "/app_heap.py") as f:
    exec(f.read())
