// Differential oracle for flask_verdant.patches: runs a batch of patch
// sequences through applyPatch/applyOperations of the real @verdant-web/common
// (2.2.0 and 2.3.1, installed under the npm aliases common220 / common231 by the
// root package.json; 3.2.2 as common322, from tests/store5, which store 5.5.0
// pins). A second argument names the libraries to run, comma-separated
// (default: common220,common231).
//
// Input (a file named on the command line, or stdin): JSON Lines, one case per
// line: {"base"?: any, "patches": [patch...], "mode": "operations"|"patch",
// "collect": bool, "wrap"?: bool}. A missing "base" means undefined. In
// "operations" mode each patch is wrapped as {oid, timestamp, data} unless
// "wrap" is false (then the items are passed as operations verbatim).
//
// Output (stdout): {"versions": {...}, "results": {"common220": [...], ...}},
// one result per case: {snapshot, deleted, error, partial}, where snapshot and
// deleted are JSON.stringify text (snapshot null = undefined), error is
// {name, message} or null, and partial is the stringified base left behind by
// a throwing patch ("patch" mode only).
//
// The common packages are plain ESM and import fine in Node 20, so unlike the
// store client this needs no esbuild bundle.
import { readFileSync } from 'node:fs';

const store5Common = new URL(
	'../../store5/node_modules/@verdant-web/common/dist/esm/index.js',
	import.meta.url,
);
const entries = {
	common220: () => import.meta.resolve('common220'),
	common231: () => import.meta.resolve('common231'),
	common322: () => store5Common.href,
};
const wanted = (process.argv[3] ?? 'common220,common231').split(',');
const libraries = {};
for (const alias of wanted) {
	if (!entries[alias]) throw new Error(`unknown library ${alias}`);
	libraries[alias] = await import(entries[alias]());
}

// listCheck() logs through console.error on every list op against a non-list.
console.error = () => {};

function versionOf(alias) {
	const entry = new URL(entries[alias]());
	const manifest = new URL('../../package.json', entry);
	return JSON.parse(readFileSync(manifest, 'utf8')).version;
}

function stringify(value) {
	try {
		const text = JSON.stringify(value);
		return text === undefined ? null : text;
	} catch (err) {
		return { stringifyError: `${err.constructor.name}: ${err.message}` };
	}
}

function runCase(lib, line) {
	const testCase = JSON.parse(line); // fresh objects per library: patches mutate
	const base = 'base' in testCase ? testCase.base : undefined;
	const deleted = testCase.collect ? [] : undefined;
	const result = { snapshot: null, deleted: null, error: null, partial: null };
	let current = base;
	try {
		if (testCase.mode === 'patch') {
			for (const patch of testCase.patches) {
				current = lib.applyPatch(current, patch, deleted);
			}
		} else {
			const operations =
				testCase.wrap === false
					? testCase.patches
					: testCase.patches.map((data, i) => ({
							oid: 'items/doc:0000abcd',
							timestamp: `0001000000000${String(i).padStart(4, '0')}node001`,
							data,
						}));
			current = lib.applyOperations(base, operations, deleted);
		}
		result.snapshot = stringify(current);
	} catch (err) {
		result.error = { name: err.constructor.name, message: String(err.message) };
		if (testCase.mode === 'patch') result.partial = stringify(current);
	}
	if (deleted) result.deleted = stringify(deleted);
	return result;
}

const input = readFileSync(process.argv[2], 'utf8');
const lines = input.split('\n').filter((line) => line.trim() !== '');
const output = { versions: {}, results: {} };
for (const [alias, lib] of Object.entries(libraries)) {
	output.versions[alias] = versionOf(alias);
	output.results[alias] = lines.map((line) => runCase(lib, line));
}
process.stdout.write(JSON.stringify(output));
