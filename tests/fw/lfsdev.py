"""A RAM block device for os.VfsLfs2 (MicroPython only) that can lose power.

Extended block protocol: readblocks(n, buf, off), writeblocks(n, buf, off),
ioctl(op, arg) with 4 = block count, 5 = block size, 6 = erase. `arm(n)` makes
the n-th program/erase from now the power cut: that operation is lost (or,
with torn=True, only a prefix of it reaches the array) and the device freezes:
every later write fails with -EIO (littlefs sees LFS_ERR_IO, Python code an
OSError) and changes nothing. `image()` hands out
the blocks as they were at the cut, for a fresh device to mount (the frozen
array is that copy: nothing touches it after the cut, so no second 24 KB
buffer is needed under a 128K heap).
"""

_EIO = 5


class RamFlash:
    def __init__(self, blocks=192, block_size=128, data=None):
        self.blocks = blocks
        self.bs = block_size
        self.data = data if data is not None else bytearray(blocks * block_size)
        self._ff = b"\xff" * block_size
        self.writes = 0  # programs + erases so far
        self.left = -1  # writes left before the cut; -1 = never
        self.torn = False
        self.cut = False

    def arm(self, n, torn=False):
        self.left = n
        self.torn = torn

    def image(self):
        return self.data

    def _lose_power(self):
        self.left -= 1
        if self.left == 0 and not self.cut:
            self.cut = True
            return True
        return False

    def readblocks(self, n, buf, off=0):
        a = n * self.bs + off
        buf[:] = memoryview(self.data)[a : a + len(buf)]

    def writeblocks(self, n, buf, off=0):
        if self.cut:
            return -_EIO
        a = n * self.bs + off
        if self.left > 0 and self._lose_power():
            if self.torn:
                k = len(buf) // 2
                memoryview(self.data)[a : a + k] = memoryview(buf)[:k]
            return -_EIO
        memoryview(self.data)[a : a + len(buf)] = buf
        self.writes += 1

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.bs
        if op == 6:
            if self.cut:
                return -_EIO
            a = arg * self.bs
            if self.left > 0 and self._lose_power():
                if self.torn:
                    k = self.bs // 2
                    memoryview(self.data)[a : a + k] = memoryview(self._ff)[:k]
                return -_EIO
            memoryview(self.data)[a : a + self.bs] = self._ff
            self.writes += 1
            return 0
        return 0
