// The gateway embeds clients/js/dist (the chat example's SDK, crates/switchboard-gateway/src/demo.rs),
// so the committed build must be what `tsc` makes of src/ now: `npm run build` and commit.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { tempDir } from "./harness.mjs";

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("the committed dist/ is a fresh tsc build of src/", () => {
  const out = tempDir("sb-tsc-");
  const tsc = path.join(PKG, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", path.join(PKG, "tsconfig.json"), "--outDir", out], { stdio: "inherit" });
  const fresh = readdirSync(out).sort();
  assert.deepEqual(readdirSync(path.join(PKG, "dist")).sort(), fresh, "dist/ holds exactly the files tsc makes");
  for (const f of fresh) {
    const committed = readFileSync(path.join(PKG, "dist", f), "utf8");
    assert.ok(committed === readFileSync(path.join(out, f), "utf8"), `dist/${f} is stale: run \`npm run build\` in clients/js and commit`);
  }
});
