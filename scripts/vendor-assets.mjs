#!/usr/bin/env node
// Copy the BUILT front-end assets the portal serves from node_modules into
// academy/web/static/vendor/ (no CDN: everything is served by the portal).
//
//   npm ci && npm run vendor
//
// Deterministic: files are copied byte for byte (minus sourceMappingURL
// comments, so browsers never request a .map we do not ship), generated files
// have fixed content, the managed folders are rebuilt from scratch, and
// MANIFEST.json lists files in sorted order with sizes and SHA-256 digests
// (no timestamps). Running it twice yields identical files.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NODE_MODULES = join(ROOT, "node_modules");
const VENDOR = join(ROOT, "academy", "web", "static", "vendor");
// Only these sub-folders of vendor/ are owned (and wiped) by this script.
const MANAGED_DIRS = ["bootstrap", "pretendard", "chartjs"];

function pkgDir(name) {
  const dir = join(NODE_MODULES, ...name.split("/"));
  if (!existsSync(join(dir, "package.json"))) {
    throw new Error(`package "${name}" is not installed; run "npm ci" first`);
  }
  return dir;
}

function pkgVersion(name) {
  return JSON.parse(readFileSync(join(pkgDir(name), "package.json"), "utf8")).version;
}

// Remove "/*# sourceMappingURL=... */" (CSS) and "//# sourceMappingURL=..." (JS)
// trailer comments; everything else is left untouched.
function stripSourceMap(buf) {
  const text = buf.toString("utf8");
  const out = text
    .replace(/\n?\/\*# sourceMappingURL=[^*]*\*\/\s*$/u, "\n")
    .replace(/\n?\/\/# sourceMappingURL=\S*\s*$/u, "\n");
  if (/sourceMappingURL=/u.test(out)) {
    throw new Error("unexpected sourceMappingURL left in output");
  }
  return Buffer.from(out, "utf8");
}

const written = [];

function write(destRel, data, from) {
  const dest = join(VENDOR, destRel);
  mkdirSync(dirname(dest), { recursive: true });
  writeFileSync(dest, data);
  written.push({ path: destRel, bytes: data.length, from });
}

function copy(pkg, srcRel, destRel, transform) {
  const src = join(pkgDir(pkg), srcRel);
  let data = readFileSync(src);
  if (transform) data = transform(data);
  write(destRel, data, `${pkg}@${pkgVersion(pkg)}/${srcRel}`);
}

// ---------------------------------------------------------------- clean
for (const d of MANAGED_DIRS) rmSync(join(VENDOR, d), { recursive: true, force: true });
mkdirSync(VENDOR, { recursive: true });

// ---------------------------------------------------------------- Bootstrap
copy("bootstrap", "dist/css/bootstrap.min.css", "bootstrap/bootstrap.min.css", stripSourceMap);
copy("bootstrap", "dist/js/bootstrap.bundle.min.js", "bootstrap/bootstrap.bundle.min.js", stripSourceMap);
copy("bootstrap", "LICENSE", "bootstrap/LICENSE");
// bootstrap.bundle.min.js embeds Popper (MIT); ship its notice too.
copy("@popperjs/core", "LICENSE.md", "bootstrap/LICENSE-popper.md");

// ---------------------------------------------------------------- Pretendard
const PRETENDARD_VF = "dist/web/variable/woff2/PretendardVariable.woff2";
const pretendardVersion = pkgVersion("pretendard");

if (existsSync(join(pkgDir("pretendard"), PRETENDARD_VF))) {
  copy("pretendard", PRETENDARD_VF, "pretendard/woff2/PretendardVariable.woff2");
  const css = `/*
 * Pretendard ${pretendardVersion} (variable, weights 45-920) — vendored by scripts/vendor-assets.mjs
 * Copyright (c) 2021 Kil Hyung-jin, with Reserved Font Name Pretendard.
 * https://github.com/orioncactus/pretendard
 * Licensed under the SIL Open Font License, Version 1.1 (see LICENSE.txt beside this file).
 */
@font-face {
  font-family: "Pretendard";
  font-weight: 45 920;
  font-style: normal;
  font-display: swap;
  src: url("./woff2/PretendardVariable.woff2") format("woff2-variations"),
    url("./woff2/PretendardVariable.woff2") format("woff2");
}
`;
  write("pretendard/pretendard.css", Buffer.from(css, "utf8"), "(generated)");
} else {
  throw new Error(`pretendard ${pretendardVersion}: ${PRETENDARD_VF} not found; the package layout changed`);
}
copy("pretendard", "dist/LICENSE.txt", "pretendard/LICENSE.txt");
// TrueType-outline static fonts for the certificate PDFs: ReportLab embeds (a subset of) TrueType
// fonts, not the CFF outlines of the .otf files or the web fonts above.
for (const weight of ["Regular", "Bold"]) {
  copy("pretendard", `dist/public/static/alternative/Pretendard-${weight}.ttf`, `pretendard/ttf/Pretendard-${weight}.ttf`);
}

// ---------------------------------------------------------------- Chart.js
// The admin's statistics charts; the UMD build embeds @kurkle/color (MIT), whose notice ships too.
copy("chart.js", "dist/chart.umd.min.js", "chartjs/chart.umd.min.js", stripSourceMap);
copy("chart.js", "LICENSE.md", "chartjs/LICENSE.md");
copy("@kurkle/color", "LICENSE", "chartjs/LICENSE-kurkle-color.md");

// ---------------------------------------------------------------- manifest
const manifest = {
  generatedBy: "scripts/vendor-assets.mjs",
  packages: Object.fromEntries(
    ["@kurkle/color", "@popperjs/core", "bootstrap", "chart.js", "pretendard"].map((p) => [p, pkgVersion(p)]),
  ),
  files: written
    .slice()
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map(({ path, bytes, from }) => ({
      path,
      bytes,
      sha256: createHash("sha256").update(readFileSync(join(VENDOR, path))).digest("hex"),
      from,
    })),
};
write("MANIFEST.json", Buffer.from(JSON.stringify(manifest, null, 2) + "\n", "utf8"), "(generated)");

// ---------------------------------------------------------------- report
const rel = relative(ROOT, VENDOR);
for (const f of written) {
  console.log(`${String(f.bytes).padStart(10)}  ${rel}/${f.path}  <- ${f.from}`);
}
console.log(`vendored ${written.length} files into ${rel}/`);
