// Differential oracle for flask_verdant.oids: reads a JSON array of strings
// (file named on the command line, or stdin) and prints, for each library
// version, what the OID helpers of @verdant-web/common make of each string.
import { readFileSync } from 'node:fs';
import * as common220 from 'common220';
import * as common231 from 'common231';

function attempt(fn) {
	try {
		return { value: fn() };
	} catch (err) {
		return { error: err.constructor.name };
	}
}

function describe(lib, text) {
	return {
		decomposed: attempt(() => {
			const { collection, id, subId } = lib.decomposeOid(text);
			return [collection, id, subId ?? null];
		}),
		converted: attempt(() => lib.convertLegacyOid(text)),
		subIdRange: attempt(() => lib.getOidSubIdRange(text)),
		legacyRange: lib.getLegacyDotOidSubIdRange(text),
		root: lib.getOidRoot(text),
		isRoot: lib.isRootOid(text),
		isLegacy: lib.isLegacyDotOid(text),
		created: [lib.createOid(text, text), lib.createOid(text, text, text)],
		replaced: lib.replaceLegacyOidsInJsonString(JSON.stringify({ a: [text, 'x'], [text]: 1 })),
	};
}

const texts = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'));
const results = {};
for (const [alias, lib] of Object.entries({ common220, common231 })) {
	results[alias] = texts.map((text) => describe(lib, text));
}
process.stdout.write(JSON.stringify(results));
