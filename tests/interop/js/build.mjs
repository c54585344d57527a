// Bundles driver.mjs once per supported store version:
//   node tests/interop/js/build.mjs            -> build/driver-<version>.mjs for each of STORES
//   node tests/interop/js/build.mjs 3.2.1      -> only that one
// The driver imports 'verdant-store'; each bundle aliases it to one installed package. Store
// 5.5.0 is installed in tests/store5 (.ci/install-store5), not by the root package.json.
import { build } from 'esbuild';
import { readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// version -> npm package (as installed by the root package.json), or a directory to install it from
const store5 = join(here, '..', '..', 'store5', 'node_modules', '@verdant-web', 'store');
export const STORES = {
  '3.6.3': '@verdant-web/store',
  '3.2.1': 'store321',
  '5.5.0': store5,
};

function installedVersion(pkg) {
  if (pkg.startsWith('/')) {
    try {
      return JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version;
    } catch {
      throw new Error(`${pkg} is not installed (run bash .ci/install-store5)`);
    }
  }
  // exports maps hide package.json from require.resolve; look for node_modules/<pkg> upward
  let dir = here;
  for (;;) {
    try {
      return JSON.parse(readFileSync(join(dir, 'node_modules', pkg, 'package.json'), 'utf8')).version;
    } catch {}
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`${pkg} is not installed (run npm ci at the repository root)`);
    dir = parent;
  }
}

const wanted = process.argv.slice(2);
const versions = wanted.length ? wanted : Object.keys(STORES);
for (const version of versions) {
  const pkg = STORES[version];
  if (!pkg) throw new Error(`unknown store version ${version}; known: ${Object.keys(STORES)}`);
  const actual = installedVersion(pkg);
  if (actual !== version) throw new Error(`${pkg} is ${actual}, expected ${version}`);
  const outfile = join(here, 'build', `driver-${version}.mjs`);
  // build beside it and rename, so a concurrent test session never loads a half-written bundle
  const tmpfile = `${outfile}.${process.pid}.tmp`;
  await build({
    entryPoints: [join(here, 'driver.mjs')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: tmpfile,
    alias: { 'verdant-store': pkg.startsWith('/') ? join(pkg, 'dist', 'esm', 'index.js') : pkg },
    external: ['bufferutil', 'utf-8-validate'],
    banner: {
      js: [
        "import { createRequire as __createRequire } from 'module';",
        'const require = __createRequire(import.meta.url);',
        `globalThis.__VERDANT_STORE_VERSION__ = ${JSON.stringify(version)};`,
      ].join('\n'),
    },
    logLevel: 'warning',
  });
  renameSync(tmpfile, outfile);
  console.log(`built ${outfile} (${pkg}@${actual})`);
}
