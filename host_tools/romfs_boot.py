"""MicroPython side of the ROMFS heap figures (`run_host --upy HEAP --romfs`,
bench_heap): stands in for a board whose code lives in a ROMFS partition.

    micropython -X heapsize=H romfs_boot.py IMAGE ARGS...   (runs /rom/main.py with ARGS)

A board maps its ROMFS partition from flash, outside the heap. The unix port
has no flash, so the image is read into one bytearray before anything else
is allocated: it sits at the bottom of the heap, is never freed or moved,
and fragments nothing. The caller enlarges the heap by exactly the bytes this
prints (`romfs: image N octets, heap M`) and subtracts them from every heap
figure. Modules then import from /rom as a board's do: their bytecode stays
in the image, only their runtime objects go to the heap.
"""

import gc
import sys

import vfs

gc.collect()
_before = gc.mem_alloc()
_f = open(sys.argv[1], "rb")
_f.seek(0, 2)
_n = _f.tell()
_f.seek(0)
_image = bytearray(_n)
_f.readinto(_image)
_f.close()
vfs.mount(vfs.VfsRom(_image), "/rom")
gc.collect()
print(f"romfs: image {_n} octets, heap {gc.mem_alloc() - _before}")
sys.path.insert(0, "/rom")
_args = sys.argv[2:]
sys.argv.clear()  # sys.argv cannot be rebound on MicroPython; the list can change
sys.argv.append("/rom/main.py")
sys.argv.extend(_args)
del _f, _n, _before, _args
import main  # noqa: E402 - from the image, after it is mounted

main._run()
