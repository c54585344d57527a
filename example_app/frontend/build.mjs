// Bundles the page's JavaScript (app.js and the real @verdant-web/store from the example app's own
// node_modules) into example_app/static/app.js, unless the bundle is newer than every source and
// the installed packages.
//   node example_app/frontend/build.mjs [--force]
import { build } from 'esbuild';
import { mkdtempSync, readdirSync, renameSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, '..', 'static', 'app.js');
const sources = [
  ...readdirSync(here).map((name) => join(here, name)),
  join(here, '..', 'node_modules', '.package-lock.json'),
];

function modified(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

const built = modified(outfile);
if (process.argv.includes('--force') || sources.some((path) => modified(path) > built)) {
  // build beside it and rename, so a running server never serves a half-written bundle
  const tmpdir = mkdtempSync(join(dirname(outfile), '.build-'));
  const tmpfile = join(tmpdir, 'app.js');
  await build({
    entryPoints: [join(here, 'app.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: 'linked',
    outfile: tmpfile,
    logLevel: 'warning',
  });
  renameSync(`${tmpfile}.map`, `${outfile}.map`);
  renameSync(tmpfile, outfile);
  rmdirSync(tmpdir);
  console.log(`built ${outfile}`);
}
