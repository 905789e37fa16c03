// Runs a MicroPython script under the official 32-bit MicroPython WebAssembly build
// (npm @micropython/micropython-webassembly-pyscript), the tests' 32-bit lane.
//
//   node tests/mp32/run.mjs [-X heapsize=N[k|m]] SCRIPT [ARG...]
//
// The build has a 32-bit word, so small integers are +-2^30 as on an ESP32 or RP2040, and it has
// micropython.heap_lock and gc.mem_alloc. It has no `machine`, sockets, ssl or littlefs, and its
// asyncio runs on JavaScript's event loop (no asyncio.run). The repository's tests/ (vectors and
// firmware tests) are copied into the build's in-memory file system at the same absolute paths,
// and firmware/ and boards/ where the box has them, /lib/envbox/firmware and /lib/envbox/boards
// (a module's __file__ is a string in the heap: the same path as on a device keeps the heap
// figures a device's), so a script finds them as it would under the Unix port; files it writes
// stay in memory. sys.path gets /lib and tests/firmware, like MICROPYPATH in
// tests/test_firmware_mp.py. Exit status: 0, or the script's SystemExit code, or 1 for an
// uncaught exception (printed as a traceback).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const argv = process.argv.slice(2);
let heap = 1024 * 1024;
if (argv[0] === "-X" && argv[1] && argv[1].startsWith("heapsize=")) {
  const v = argv[1].slice(9);
  heap = parseInt(v, 10) * ({ k: 1024, m: 1048576 }[v.slice(-1).toLowerCase()] || 1);
  argv.splice(0, 2);
}
if (!argv.length) {
  console.error("usage: run.mjs [-X heapsize=N] SCRIPT [ARG...]");
  process.exit(2);
}
const script = path.resolve(argv[0]);
const out = (s) => process.stdout.write(s + "\n");
const mp = await loadMicroPython({ heapsize: heap, stdout: out, stderr: out });

function mkdirs(p) {
  let cur = "";
  for (const part of p.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}
function copyTree(src, dst) {
  mkdirs(dst);
  for (const ent of fs.readdirSync(src, { withFileTypes: true })) {
    const p = path.join(src, ent.name);
    if (ent.isDirectory()) {
      if (ent.name !== "__pycache__" && ent.name !== "node_modules") {
        copyTree(p, path.join(dst, ent.name));
      }
    } else if (/\.(py|json|mpy|bin|txt)$/.test(ent.name)) {
      mp.FS.writeFile(path.join(dst, ent.name), fs.readFileSync(p));
    }
  }
}
for (const d of ["tests/firmware", "tests/vectors", "tests/mp32"]) {
  const p = path.join(root, d);
  if (fs.existsSync(p)) copyTree(p, p);
}
// one import name, as on the box: envbox.firmware, envbox.boards (envbox/__init__ is empty)
const mppath = "/lib";
for (const d of ["firmware", "boards"]) {
  copyTree(path.join(root, d), path.join(mppath, "envbox", d));
}
mp.FS.writeFile(path.join(mppath, "envbox", "__init__.py"), "");
mkdirs(path.dirname(script));
mp.FS.writeFile(script, fs.readFileSync(script));
mp.FS.chdir(root);

const setup = `
import sys
sys.path.append(${JSON.stringify(mppath)})
sys.path.append(${JSON.stringify(root + "/tests/firmware")})
# stand-ins, last on the path, for modules this build lacks (socket): they let a module import;
# any use raises
sys.path.append(${JSON.stringify(root + "/tests/mp32/stand_ins")})
sys.argv[:] = ${JSON.stringify(argv.map((a, i) => (i ? a : script)))}
__file__ = ${JSON.stringify(script)}
`;
let code = 0;
try {
  mp.runPython(setup);
  mp.runPython(fs.readFileSync(script, "utf8"));
  // coroutine tests (tests/firmware/mptest.py): run on this build's asyncio, inside a task (its
  // top-level coroutine cannot be cancelled, which wait_for_ms needs)
  mp.runPython("import sys\n_mp = sys.modules.get('mptest')\n_pending = bool(_mp and _mp.pending())");
  // a script that leaves a coroutine function __mp32_main__ (no asyncio.run here) gets it run
  if (mp.globals.get("__mp32_main__")) {
    await mp.runPythonAsync("import asyncio\nawait asyncio.create_task(__mp32_main__())");
  }
  if (mp.globals.get("_pending")) {
    await mp.runPythonAsync(
      "import asyncio\n_ok = await asyncio.create_task(_mp.finish_async())");
    if (!mp.globals.get("_ok")) code = 1;
  }
} catch (e) {
  if (e && e.name === "PythonError") {
    if (e.type === "SystemExit") {
      const m = /SystemExit:?\s*(\d+)?/.exec(e.message || "");
      code = m && m[1] ? parseInt(m[1], 10) : 0;
    } else {
      out(String(e.message || e).trimEnd());
      code = 1;
    }
  } else {
    out("run.mjs: " + (e && e.stack ? e.stack.split("\n")[0] : String(e)));
    code = 1;
  }
}
process.exit(code);
