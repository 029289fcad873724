// bench_heap (host_tools/upy32.py): the heap that importing a set of dialgate
// modules takes under a 32-bit MicroPython, the WebAssembly port (wasm32: 4-octet
// pointers and object headers, as on a Pico W or an ESP32).
//
//   node import_cost.mjs TREE MODS_FILE
//
// TREE: build_tree's output (dialgate/*.mpy), copied into the port's in-memory
// filesystem. MODS_FILE: the module names, space-separated. Prints what
// bench_heap._SET prints under the unix port: "alloc N" between two qstr_info().
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "node:fs";

const [tree, modsFile] = process.argv.slice(2);
const mods = fs.readFileSync(modsFile, "utf8").split(/\s+/).filter((m) => m);
const mp = await loadMicroPython({ heapsize: 2 * 1024 * 1024, stdout: (l) => console.log(l), stderr: (l) => console.error(l) });
mp.FS.mkdir("/lib");
mp.FS.mkdir("/lib/dialgate");
for (const f of fs.readdirSync(tree + "/dialgate")) {
  if (f.endsWith(".mpy") || f.endsWith(".json")) {
    mp.FS.writeFile("/lib/dialgate/" + f, fs.readFileSync(tree + "/dialgate/" + f));
  }
}
try {
  mp.runPython(`
import gc, sys, micropython
sys.path.insert(0, "/lib")
mods = ${JSON.stringify(mods)}
gc.collect()
a = gc.mem_alloc()
micropython.qstr_info()
for m in mods:
    __import__("dialgate." + m)
gc.collect()
print("alloc", gc.mem_alloc() - a)
print("maxsize", sys.maxsize)
micropython.qstr_info()
`);
} catch (e) {
  console.error(String(e));
  process.exit(1);
}
