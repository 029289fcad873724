// host_tools/upy32.py: run a MicroPython script under the 32-bit WebAssembly port.
//
//   node run.mjs SCRIPT ARGS...
//
// The port has no access to the host's files, so SCRIPT and every ARG that names
// a file or a folder on the host is copied into its in-memory filesystem at the
// same path first; the script then sees sys.argv = [SCRIPT, ARGS...] as under
// the unix port, and its output is printed as it comes.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "node:fs";
import path from "node:path";

const [script, ...args] = process.argv.slice(2);
const mp = await loadMicroPython({ heapsize: 2 * 1024 * 1024, stdout: (l) => console.log(l), stderr: (l) => console.error(l) });

function copy(p) {
  let dir = "";
  for (const part of path.dirname(p).split("/").filter((x) => x)) {
    dir += "/" + part;
    if (!mp.FS.analyzePath(dir).exists) mp.FS.mkdir(dir);
  }
  if (fs.statSync(p).isDirectory()) {
    if (!mp.FS.analyzePath(p).exists) mp.FS.mkdir(p);
    for (const f of fs.readdirSync(p)) copy(path.join(p, f));
  } else {
    mp.FS.writeFile(p, fs.readFileSync(p));
  }
}

for (const p of [script, ...args]) if (p.startsWith("/") && fs.existsSync(p)) copy(p);
try {
  mp.runPython("import sys\nsys.argv.clear()\nsys.argv.extend(" + JSON.stringify([script, ...args]) + ")");
  mp.runPython(fs.readFileSync(script, "utf8"));
} catch (e) {
  console.error(String(e));
  process.exit(1);
}
